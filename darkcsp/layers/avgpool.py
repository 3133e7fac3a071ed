"""[avgpool]: TODO (skeleton, being written this session)."""
from __future__ import annotations

from .base import Layer


class AvgPool(Layer):
    type = "avgpool"
    aliases = ('avg',)
