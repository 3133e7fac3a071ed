"""[softmax]: TODO (skeleton, being written this session)."""
from __future__ import annotations

from .base import Layer


class Softmax(Layer):
    type = "softmax"
    aliases = ('soft',)
