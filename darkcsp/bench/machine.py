"""Machine and process information for benchmark headers: CPU, SIMD flags, memory, library versions, load,
and a process's resident set size (current and peak)."""
from __future__ import annotations

import os
import platform
import sys
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

__all__ = ["cpu_model", "cpu_flags", "memory_total_gib", "numpy_blas", "library_versions", "load_average",
           "machine_info", "usable_cores", "reset_peak_rss", "rss_mib"]


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> List[str]:
    """The SIMD features that decide which kernels the libraries pick."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "avx_vnni")
                    return [w for w in wanted if w in have]
    except OSError:
        pass
    return []


def memory_total_gib() -> Optional[float]:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2 ** 20, 1)
    except OSError:
        pass
    return None


def numpy_blas() -> str:
    """Name and version of the BLAS numpy was built with (numpy >= 1.25 reports it as a dict)."""
    try:
        cfg = np.show_config(mode="dicts")  # type: ignore[call-arg]
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        name = blas.get("name", "?")
        version = blas.get("version", "")
        return f"{name} {version}".strip()
    except Exception:  # older numpy: show_config prints and has no mode
        return "?"


def library_versions() -> Dict[str, str]:
    """Versions of the libraries this interpreter can import (absent ones are left out)."""
    from .. import __version__
    out = {"python": platform.python_version(), "darkcsp": __version__, "numpy": np.__version__,
           "blas": numpy_blas()}
    for mod, key in (("onnxruntime", "onnxruntime"), ("cv2", "opencv"), ("onnx", "onnx")):
        try:
            out[key] = __import__(mod).__version__
        except Exception:
            pass
    return out


def load_average() -> Optional[Tuple[float, float, float]]:
    try:
        return tuple(round(v, 2) for v in os.getloadavg())  # type: ignore[return-value]
    except (AttributeError, OSError):
        return None


def machine_info() -> Dict[str, Any]:
    """What the header of a benchmark names: CPU, cores, memory, OS and library versions."""
    affinity = usable_cores()
    return {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cores": os.cpu_count() or 1,
        "cores_usable": affinity,
        "memory_gib": memory_total_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "versions": library_versions(),
        "load_average": load_average(),
    }


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (Linux >= 4.0: write 5 to /proc/self/clear_refs); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def rss_mib() -> Tuple[Optional[float], Optional[float]]:
    """(current, peak) resident set size of this process in MiB (peak: VmHWM, else ru_maxrss)."""
    cur = peak = None
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    cur = int(line.split()[1]) / 1024
                elif line.startswith("VmHWM:"):
                    peak = int(line.split()[1]) / 1024
    except OSError:
        pass
    if peak is None:
        try:
            import resource
            ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            peak = ru / 1024 if sys.platform != "darwin" else ru / 2 ** 20
        except Exception:
            pass
    return cur, peak


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
