"""[reorg3d]: TODO (skeleton, being written this session)."""
from __future__ import annotations

from .base import Layer


class Reorg3d(Layer):
    type = "reorg3d"
    aliases = ()


class ReorgOld(Layer):
    type = "reorg"
    aliases = ()
