"""[yolo]: TODO (skeleton, being written this session)."""
from __future__ import annotations

from .base import Layer


class Yolo(Layer):
    type = "yolo"
    aliases = ()
