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


POISON_ABOVE = 1.5


class NaNAfter(TinyCNN):
    """NaN logits, and so NaN gradients, for every example whose first pixel exceeds ``POISON_ABOVE``.

    Tests plant such pixels; in ``fake`` data (standard normal pixels) a few examples have one.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        poison = (x[:, 0, 0, 0] > POISON_ABOVE)[:, None]
        return super().forward(x) * torch.where(poison, float("nan"), 1.0)


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


class PatchTokens(nn.Module):
    """A ViT-like toy whose token layer ``block`` is [N, 1 + 3·2, C]: a class token and a 3×2 patch grid.

    Patches are 8×12 on a 24×24 image, so the grid is not square and 7 tokens are not a square
    (plus one) either: the sweep needs an explicit token grid to map them.
    """

    def __init__(self, num_classes: int = 5, dim: int = 16):
        super().__init__()
        self.embed = nn.Conv2d(3, dim, kernel_size=(8, 12), stride=(8, 12))
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.block = nn.Sequential(nn.Linear(dim, dim), nn.GELU())
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = self.embed(x).flatten(2).transpose(1, 2)  # [N, h·w, C], row-major over the grid
        tokens = torch.cat([self.cls.expand(len(x), -1, -1), patches], dim=1)
        return self.head(self.block(tokens).mean(1))


def patch_tokens(num_classes: int = 5) -> nn.Module:
    torch.manual_seed(0)
    return PatchTokens(num_classes)


class OutOfMemoryAt(TinyCNN):
    """Raises torch's OutOfMemoryError on the Nth batch when ATTRSTREAM_TEST_OOM_AT=N is set.

    The probe's single-image forward does not count; without the variable (a rerun) it is TinyCNN.
    """

    def __init__(self, num_classes: int = 5):
        super().__init__(num_classes)
        self.batches = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import os

        if len(x) > 1:
            self.batches += 1
            if str(self.batches) == os.environ.get("ATTRSTREAM_TEST_OOM_AT"):
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().forward(x)


def oom_cnn(num_classes: int = 5) -> nn.Module:
    torch.manual_seed(0)
    return OutOfMemoryAt(num_classes)


def unreachable_checkpoint(num_classes: int = 5) -> nn.Module:
    """A factory that fails the way real ones do (its own message must reach the user)."""
    raise RuntimeError("checkpoint server ckpt.internal is unreachable")


def fixed_head() -> nn.Module:
    """A factory without a num_classes parameter."""
    return tiny_cnn()


class Rescale(nn.Module):
    """A parameter-free first layer: nothing in the model says which axis of its output holds channels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x


def rescaled_cnn(num_classes: int = 5) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(Rescale(), TinyCNN(num_classes))


class SequenceNet(nn.Module):
    """Image rows as a 1-D signal: ``[N, 3·H, W]`` through a Conv1d (its output is ``[N, C, L]``)."""

    def __init__(self, rows: int = 16, num_classes: int = 5):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv1d(3 * rows, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x.flatten(1, 2)).mean(2))


def sequence_net(num_classes: int = 5) -> nn.Module:
    torch.manual_seed(0)
    return SequenceNet(num_classes=num_classes)


class ViewHead(TinyCNN):
    """Flattens its feature map with ``.view``, as many hand-written CNNs do: only contiguous inputs pass."""

    def __init__(self, num_classes: int = 5):
        super().__init__(num_classes)
        self.head = nn.Linear(16 * 8 * 8, num_classes)  # 16×16 inputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.stage2(self.stage1(x))
        return self.head(a.view(len(a), -1))


def view_cnn(num_classes: int = 5) -> nn.Module:
    torch.manual_seed(0)
    return ViewHead(num_classes)
class FixedInputCNN(TinyCNN):
    """A flattening head sized for 32×32 inputs: any other input size fails past ``stage2`` (size checks)."""

    def __init__(self, num_classes: int = 5):
        super().__init__(num_classes)
        self.head = nn.Linear(16 * 16 * 16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stage2(self.stage1(x)).flatten(1))


def fixed_input_cnn(num_classes: int = 5) -> nn.Module:
    torch.manual_seed(0)
    return FixedInputCNN(num_classes)
