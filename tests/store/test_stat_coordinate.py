"""The kernels' statistic order is the store's ``stat`` coordinate, and each named column holds
that statistic: cross-checked on a real store against numpy statistics of the real activations."""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr
import zarr

from attrstream.engine import sweep
from attrstream.engine.data import FakeImages
from attrstream.kernels.names import STAT_NAMES
from tests.engine.models import tiny_cnn

NUMPY_STATS = {
    "mean": lambda a: a.mean(-1),
    "std": lambda a: a.std(-1),
    "min": lambda a: a.min(-1),
    "max": lambda a: a.max(-1),
    "frac_pos": lambda a: (a > 0).mean(-1),
}


def test_stat_columns_are_named_by_the_store_coordinate(tmp_path) -> None:
    model, data = tiny_cnn(), FakeImages(n=6, image_size=12, num_classes=5)
    path = tmp_path / "run.zarr"
    run = sweep(model, data, path, layers=["stage2"], methods=["stats"], batch_size=4, progress=False)

    coordinate = tuple(str(v) for v in zarr.open_group(path, mode="r")["layers/stage2/stat"][:])
    assert coordinate == STAT_NAMES == run.stat_names("stage2")
    assert set(NUMPY_STATS) == set(coordinate)  # every column has an independent reference below

    x = torch.stack([data[i][0] for i in range(len(data))])
    with torch.no_grad():
        acts = model.stage2(model.stage1(x)).flatten(2).double().numpy()  # [N, C, H*W]
    stats = run.layer_stats("stage2")
    ds = xr.open_zarr(path, group="layers/stage2", consolidated=False)
    for name in coordinate:
        np.testing.assert_allclose(stats[..., coordinate.index(name)], NUMPY_STATS[name](acts),
                                   rtol=1e-5, atol=1e-6, err_msg=name)
        np.testing.assert_array_equal(ds["stats"].sel(stat=name).values, stats[..., coordinate.index(name)])
