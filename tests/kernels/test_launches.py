"""The launch recorder (``conftest.py``, ``_launches``) catches a launch that ``compile_targets()``
does not cover, so the compile test builds what the launchers really choose."""

from __future__ import annotations

from unittest import mock

import pytest
import torch

from attrstream.kernels import _channel_stats, _maps, channel_stats, layer_maps, product_map
from tests.kernels._cases import DEVICE, f16, f32, make_nchw

pytestmark = pytest.mark.skipif(DEVICE.type != "cpu", reason="checks the recorder, not the device")


def test_typical_launches_are_recorded_and_covered(launch_recorder):
    a = make_nchw((16, 16, 16, 16), f16, seed=1)  # aligned, collapsible: the vector-load targets
    g = make_nchw((16, 16, 16, 16), f16, seed=2)
    before = launch_recorder.launches
    with launch_recorder.capture() as missed:
        layer_maps(a, g, "l2", f16, backend="triton")
    assert launch_recorder.launches - before == 3 and missed == []


def test_a_map_tile_outside_the_list_is_caught(launch_recorder):
    assert (8, 256) not in _maps.BLOCK_CONFIGS
    x = make_nchw((2, 5, 4, 3), f32)
    with mock.patch.object(_maps, "_pick_blocks", lambda *_: (8, 256)), launch_recorder.capture() as missed:
        product_map(x, x, "sum", f32, backend="triton")
    assert [(m.kernel, m.constexprs["BLOCK_C"], m.constexprs["BLOCK_P"]) for m in missed] == [
        ("_channel_maps_kernel", 8, 256)
    ]


def test_a_stats_tile_outside_the_list_is_caught(launch_recorder):
    assert (16, 16) not in _channel_stats.SPACE_FAST_BLOCKS + _channel_stats.CHANNEL_FAST_BLOCKS
    with mock.patch.object(_channel_stats, "_choose_blocks", lambda *_, **__: (16, 16)), \
            launch_recorder.capture() as missed:  # fmt: skip
        channel_stats(make_nchw((2, 5, 4, 3)), backend="triton")
    assert [(m.kernel, m.constexprs["BLOCK_C"], m.constexprs["BLOCK_S"]) for m in missed] == [
        ("_channel_stats_kernel", 16, 16)
    ]


def test_other_warps_or_dtypes_are_caught(launch_recorder):
    x = make_nchw((2, 5, 4, 3), f32)
    with mock.patch.object(_maps, "NUM_WARPS", 8), launch_recorder.capture() as missed:
        product_map(x, x, "sum", f32, backend="triton")
    assert {m.kernel for m in missed} == {"_channel_maps_kernel", "_normalize_kernel"}
    with mock.patch.dict(_maps.TRITON_DTYPES, {torch.float64: "fp64"}), launch_recorder.capture() as missed:
        product_map(x.double(), x.double(), "sum", f32, backend="triton")
    assert [m.signature["x_ptr"] for m in missed] == ["*fp64"]
