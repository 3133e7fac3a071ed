"""The layer registry: every Darknet section type darkcsp knows, listed explicitly.

Adding a layer type = one module here (one class per section type, see ``base.Layer``) plus one line below.
"""
from __future__ import annotations

from typing import Dict, Type

from . import convolutional
from . import connected
from . import local
from . import batchnorm
from . import activation
from . import normalization
from . import implicit
from . import maxpool
from . import avgpool
from . import route
from . import shortcut
from . import upsample
from . import reorg
from . import sam
from . import scale_channels
from . import softmax
from . import crop
from . import passthrough
from . import yolo
from . import gaussian_yolo
from . import region
from . import detection
from .base import Layer

#: every layer class, in no particular order
LAYER_CLASSES = (
    convolutional.Convolutional,
    connected.Connected,
    local.Local,
    batchnorm.BatchNorm,
    activation.Activation,
    normalization.Normalization,
    implicit.Implicit,
    maxpool.MaxPool,
    maxpool.LocalAvgPool,
    avgpool.AvgPool,
    route.Route,
    shortcut.Shortcut,
    upsample.Upsample,
    reorg.Reorg3d,
    reorg.ReorgOld,
    sam.Sam,
    scale_channels.ScaleChannels,
    softmax.Softmax,
    crop.Crop,
    passthrough.Dropout,
    passthrough.Empty,
    passthrough.Cost,
    passthrough.Contrastive,
    yolo.Yolo,
    gaussian_yolo.GaussianYolo,
    region.Region,
    detection.Detection,
)

#: section name (canonical and aliases) -> layer class
REGISTRY: Dict[str, Type[Layer]] = {}
for _cls in LAYER_CLASSES:
    for _name in (_cls.type,) + tuple(_cls.aliases):
        if _name in REGISTRY:
            raise RuntimeError(f"section name [{_name}] registered twice")
        REGISTRY[_name] = _cls

#: sections Darknet parses that darkcsp refuses, with the reason
UNSUPPORTED: Dict[str, str] = {
    **{name: f"recurrent layer [{name}] is not supported by darkcsp (inference of rnn/gru/lstm/crnn/conv_lstm/history "
             "needs state across frames)" for name in ("rnn", "gru", "lstm", "crnn", "conv_lstm", "history")},
    "deconvolutional": "[deconvolutional] exists only in pjreddie's Darknet, whose weight loader divides by zero "
                       "for it; darkcsp does not support it",
    "deconv": "[deconv] exists only in pjreddie's Darknet, whose weight loader divides by zero for it; "
              "darkcsp does not support it",
}
