"""[normalization]: TODO (skeleton, being written this session)."""
from __future__ import annotations

from .base import Layer


class Normalization(Layer):
    type = "normalization"
    aliases = ('lrn',)
