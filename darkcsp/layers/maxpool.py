"""[maxpool]: TODO (skeleton, being written this session)."""
from __future__ import annotations

from .base import Layer


class MaxPool(Layer):
    type = "maxpool"
    aliases = ('max',)


class LocalAvgPool(Layer):
    type = "local_avgpool"
    aliases = ('local_avg',)
