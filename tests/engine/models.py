"""Small models the engine tests import by ``package.module:factory`` (also from subprocesses)."""

from __future__ import annotations

import torch
from torch import nn


class TinyCNN(nn.Module):
    """Two conv stages, GAP head: enough structure for every method, fast on CPU."""

    def __init__(self, num_classes: int = 5):
        super().__init__()
        self.stage1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.stage2 = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1, stride=2), nn.ReLU())
        self.head = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stage2(self.stage1(x)).mean((2, 3)))


class NaNAfter(TinyCNN):
    """Produces NaN logits for the example whose first pixel is exactly 0.5 (planted by tests)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = super().forward(x)
        poison = (x[:, 0, 0, 0] == 0.5)[:, None]
        return torch.where(poison, torch.full_like(logits, float("nan")), logits)


def tiny_cnn(num_classes: int = 5) -> nn.Module:
    torch.manual_seed(0)
    return TinyCNN(num_classes)


def nan_model(num_classes: int = 5) -> nn.Module:
    torch.manual_seed(0)
    return NaNAfter(num_classes)


class SlowCNN(TinyCNN):
    """Sleeps in every forward, so that crash tests can kill a sweep between units."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import time

        time.sleep(0.15)
        return super().forward(x)


def slow_cnn(num_classes: int = 5) -> nn.Module:
    torch.manual_seed(0)
    return SlowCNN(num_classes)
