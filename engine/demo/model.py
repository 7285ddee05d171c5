"""``ShapesNet``: the demo's small CNN, shaped for attribution.

Top-level stages have stable names a user can pass as layers (``block1``, ``block2``, ``block3``,
``pool``, ``fc``; inner modules as ``block3.conv2`` etc.). The head is global average pooling and
one linear layer, so a class score is a sum over ``block3`` positions: Grad-CAM at ``block3`` is
exactly the class activation map, and grad×input stays spatially faithful. ReLUs are not in-place,
so a hooked tensor is never overwritten by the next module.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from attrstream.engine.errors import ConfigError


def _block(c_in: int, c_out: int, pool: bool) -> nn.Sequential:
    layers: OrderedDict[str, nn.Module] = OrderedDict(
        conv1=nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        bn1=nn.BatchNorm2d(c_out),
        relu1=nn.ReLU(),
        conv2=nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        bn2=nn.BatchNorm2d(c_out),
        relu2=nn.ReLU(),
    )
    if pool:
        layers["pool"] = nn.MaxPool2d(2)
    return nn.Sequential(layers)


class ShapesNet(nn.Module):
    """Three conv blocks (64² → 32² → 16² → 16² for 64-pixel inputs), global average pooling, ``fc``.

    ``block3`` keeps its 16×16 resolution (no pooling) so that its Grad-CAM map is fine enough to
    be scored against object masks.
    """

    def __init__(self, num_classes: int, widths: tuple[int, int, int] = (8, 16, 32)) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ConfigError(f"Expected num_classes as an integer >= 2, got {num_classes!r}.")
        if len(widths) != 3 or any(not isinstance(w, int) or w < 1 for w in widths):
            raise ConfigError(f"Expected three positive block widths, got {widths!r}.")
        self.block1 = _block(3, widths[0], pool=True)
        self.block2 = _block(widths[0], widths[1], pool=True)
        self.block3 = _block(widths[1], widths[2], pool=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[2], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(self.block1(x)))
        return self.fc(self.pool(x).flatten(1))
