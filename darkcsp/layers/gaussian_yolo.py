"""[Gaussian_yolo]: TODO (skeleton, being written this session)."""
from __future__ import annotations

from .base import Layer


class GaussianYolo(Layer):
    type = "Gaussian_yolo"
    aliases = ()
