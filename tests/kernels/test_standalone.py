"""attrstream.kernels stands alone: a fresh interpreter imports it and runs every op without the engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import attrstream.kernels

SCRIPT = """
import json, sys
import torch
import attrstream.kernels as k

gen = torch.Generator().manual_seed(0)
a, g = torch.randn(2, 6, 5, 4, generator=gen), torch.randn(2, 6, 5, 4, generator=gen)
tokens = torch.randn(2, 7, 6, generator=gen)
ops = {
    "channel_stats": k.channel_stats(a, backend="torch"),
    "channel_stats_tokens": k.channel_stats(tokens, layout="tokens", backend="torch"),
    "channel_stats_relevance": k.channel_stats(a, g=g, backend="torch"),
    "product_map": k.product_map(a, g, backend="torch"),
    "saliency": k.saliency(g, backend="torch"),
    "grad_cam": k.grad_cam(a, g, backend="torch"),
    "layer_maps": k.layer_maps(a, g, backend="torch"),
}
shapes = {name: [list(t.shape) for t in torch.utils._pytree.tree_leaves(out)] for name, out in ops.items()}
engine = sorted(m for m in sys.modules if m.startswith("attrstream.engine"))
print(json.dumps({"shapes": shapes, "engine_modules": engine}))
"""


def test_kernels_run_without_importing_the_engine():
    env = {**os.environ, "ATTRSTREAM_BACKEND": "auto"}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-4000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["engine_modules"] == []
    stats, one_map = [2, 6, len(attrstream.kernels.ACTIVATION_STAT_NAMES)], [[2, 5, 4], [2]]
    with_relevance = [2, 6, len(attrstream.kernels.STAT_NAMES)]
    assert result["shapes"] == {
        "channel_stats": [stats],
        "channel_stats_tokens": [stats],
        "channel_stats_relevance": [with_relevance],
        "product_map": one_map,
        "saliency": one_map,
        "grad_cam": one_map,
        "layer_maps": [with_relevance, *one_map, *one_map],
    }
