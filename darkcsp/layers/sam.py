"""[sam]: TODO (skeleton, being written this session)."""
from __future__ import annotations

from .base import Layer


class Sam(Layer):
    type = "sam"
    aliases = ()
