"""[scale_channels]: TODO (skeleton, being written this session)."""
from __future__ import annotations

from .base import Layer


class ScaleChannels(Layer):
    type = "scale_channels"
    aliases = ()
