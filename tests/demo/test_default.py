"""The real default: accuracy and localization bars of the demo model on held-out shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attrstream.engine.demo.localization import chance_level, localization_table
from attrstream.engine.demo.shapes import ShapesDataset

pytestmark = pytest.mark.slow


def _maps(model: torch.nn.Module, x: torch.Tensor) -> dict[str, np.ndarray]:
    """grad×input, saliency and Grad-CAM at block3 with plain autograd (score: predicted-class logit)."""
    x = x.clone().requires_grad_(True)
    kept = {}
    hook = model.block3.register_forward_hook(lambda module, args, out: kept.__setitem__("a", out))
    try:
        logits = model(x)
    finally:
        hook.remove()
    score = logits.gather(1, logits.argmax(1, keepdim=True)).sum()
    gx, ga = torch.autograd.grad(score, (x, kept["a"]))
    cam = torch.relu((ga.mean((2, 3), keepdim=True) * kept["a"]).sum(1))
    return {"grad_x_input": (x * gx).sum(1).detach().numpy(), "saliency": gx.abs().amax(1).numpy(),
            "grad_cam/block3": cam.detach().numpy()}


def test_default_model_is_accurate_and_its_maps_point_at_the_object(default_model):
    model, info = default_model
    assert info.trained_now and info.accuracy >= 0.95
    data = ShapesDataset(300, split="test")  # held out: the training stream is the train split
    x, _, masks = data.batch(range(len(data)))
    rows = {row["method"]: row for row in localization_table(_maps(model, x), masks.numpy())}
    chance = float(chance_level(masks.numpy()).mean())
    assert rows["grad_x_input"]["pointing"] >= 0.85
    for row in rows.values():
        assert row["energy"] >= 2 * chance, row
