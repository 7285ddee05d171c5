"""The weights hash is a store's resume fingerprint: hashing in place must give the very digest of
the copied bytes (stores written before keep resuming), and any changed weight must change it."""

from __future__ import annotations

import hashlib

import torch
from torch import nn
from torch.utils.data import TensorDataset

from attrstream.engine import sweep
from attrstream.engine.models import weights_sha256
from tests.engine.models import tiny_cnn


def _copied(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{tuple(tensor.shape)}:{t.dtype}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def test_the_digest_of_the_bytes_in_state_dict_order():
    model = tiny_cnn()
    model.register_buffer("transposed_buf", torch.arange(6.0).reshape(2, 3).t())  # not contiguous
    model.register_buffer("empty_buf", torch.zeros(0))
    model.register_buffer("half_buf", torch.ones(3, dtype=torch.float16))
    assert weights_sha256(model) == _copied(model)


def test_any_changed_weight_changes_it():
    model = tiny_cnn()
    before = weights_sha256(model)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1e-3
    assert weights_sha256(model) != before


def test_a_sweep_records_the_digest_of_the_real_weights(tmp_path):
    """The shape probe runs the model with its parameters swapped for meta tensors: the store must
    still record (and resume by) the digest of the real weights, which the sweep leaves unchanged."""
    model = tiny_cnn().eval()
    expected = weights_sha256(model)
    run = sweep(model, TensorDataset(torch.rand(2, 3, 16, 16)), tmp_path / "s.zarr", methods=["stats"],
                layers=["stage1"], batch_size=2, progress=False)
    assert run.meta["config"]["model"]["weights_sha256"] == expected == weights_sha256(model)
