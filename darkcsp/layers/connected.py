"""[connected]: TODO (skeleton, being written this session)."""
from __future__ import annotations

from .base import Layer


class Connected(Layer):
    type = "connected"
    aliases = ('conn',)
