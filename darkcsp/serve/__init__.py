"""``darkcsp serve``: Darknet's detector as an HTTP service (FastAPI + uvicorn, the optional ``serve`` extra).

``create_app(detector)`` builds the application: ``POST /detect`` (the ``detect --json`` record of an uploaded
image), ``GET /model``, ``GET /health``, the web page ``GET /`` and, with a video source, ``GET /stream.mjpg``
and ``GET /events`` (Darknet's ``-mjpeg_port`` and ``-json_port``). Importing this package needs fastapi;
``require_serve_extra()`` turns a missing extra into a DarkcspError that says how to install it.
"""
from __future__ import annotations

from ..errors import DarkcspError

__all__ = ["create_app", "require_serve_extra", "ServeConfig"]

_EXTRA = ("fastapi", "uvicorn", "python_multipart")


def require_serve_extra() -> None:
    """Raise a DarkcspError naming the install command when fastapi, uvicorn or python-multipart is missing."""
    import importlib
    missing = []
    for name in _EXTRA:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name.replace("_", "-"))
    if missing:
        raise DarkcspError(f"darkcsp serve needs {', '.join(missing)} (the 'serve' extra): "
                           "pip install 'darkcsp[serve]'")


def __getattr__(name):  # lazy: `import darkcsp.serve` works without the extra, create_app needs it
    if name in ("create_app", "ServeConfig"):
        from . import app
        return getattr(app, name)
    raise AttributeError(name)
