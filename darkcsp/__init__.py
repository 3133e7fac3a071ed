"""darkcsp: a Darknet-compatible .cfg compiler and runtime (NumPy reference executor, ONNX lowering)."""
from __future__ import annotations

__version__ = "0.1.0"

from .detector import Detection, Detector
from .errors import (CfgError, DarkcspError, ImageError, ImageTooLargeError, ResourceError, UnsupportedError,
                     WeightsError)
from .graph import Graph, load_graph
from .model import Model, load

__all__ = ["load", "load_graph", "Model", "Graph", "Detector", "Detection", "DarkcspError", "CfgError",
           "WeightsError", "ImageError", "ImageTooLargeError", "UnsupportedError", "ResourceError", "__version__"]
