"""[convolutional]: TODO (skeleton, being written this session)."""
from __future__ import annotations

from .base import Layer


class Convolutional(Layer):
    type = "convolutional"
    aliases = ('conv',)
