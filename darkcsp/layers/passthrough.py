"""[dropout]: TODO (skeleton, being written this session)."""
from __future__ import annotations

from .base import Layer


class Dropout(Layer):
    type = "dropout"
    aliases = ()


class Empty(Layer):
    type = "empty"
    aliases = ('silence',)


class Cost(Layer):
    type = "cost"
    aliases = ()


class Contrastive(Layer):
    type = "contrastive"
    aliases = ()
