"""Layer layouts through the real sweep: decided from the model (NHWC Swin, Conv1d, tokens, vectors),
an undecidable layer as a ConfigError naming the override, and the override through the API and CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import LayerGradientXActivation
from torch import nn
from torchvision.models.swin_transformer import SwinTransformer
from torchvision.models.vision_transformer import VisionTransformer

from attrstream.engine import open_run, sweep
from attrstream.engine.capture import inference_mode_for_attribution
from attrstream.engine.data import FakeImages
from attrstream.engine.errors import ConfigError
from attrstream.engine.layouts import decide_layout
from attrstream.engine.probe import probe_model
from attrstream.kernels.names import ACTIVATION_STAT_NAMES, RELEVANCE, STAT_NAMES
from tests.engine.models import SequenceNet, rescaled_cnn, tiny_cnn
from tests.engine.test_cli_errors import TINY, assert_one_line_error, attrstream
from tests.engine.test_sweep_oracle import rel_err

METHODS = ("stats", "grad_x_act", "grad_cam")
ACT = len(ACTIVATION_STAT_NAMES)


def stats64(a: torch.Tensor) -> np.ndarray:
    """Per-channel statistics of ``a`` with channels on axis 1 and everything after it pooled (the
    activation's, the first ``ACT`` columns of the stored statistics)."""
    a = a.double().flatten(2)
    return torch.stack([a.mean(2), a.std(2, unbiased=False), a.amin(2), a.amax(2), (a > 0).double().mean(2)],
                       dim=2).numpy()


def output_of(model: nn.Module, layer: str, x: torch.Tensor) -> torch.Tensor:
    kept = []
    handle = model.get_submodule(layer).register_forward_hook(lambda _m, _i, out: kept.append(out.detach()))
    with torch.no_grad():
        model(x)
    handle.remove()
    return kept[0]


def layout_of(model: nn.Module, layer: str, shape: tuple[int, ...], given: str | None = None) -> str:
    with inference_mode_for_attribution(model):
        return decide_layout(layer, probe_model(model, torch.zeros(1, *shape)), given)


def small_sweep(tmp_path, model, size=16, **options):
    return sweep(model, FakeImages(n=2, image_size=size, num_classes=5), tmp_path / "run.zarr", batch_size=2,
                 progress=False, methods=METHODS, **options)


def test_swin_features_are_channels_last(tmp_path):
    torch.manual_seed(0)
    swin = SwinTransformer(patch_size=[4, 4], embed_dim=8, depths=[1, 1], num_heads=[1, 1], window_size=[2, 2],
                           num_classes=5).eval()
    run = small_sweep(tmp_path, swin, size=32)  # default layers: features, [N, 4, 4, 16]
    (spec,) = run.spec.layers
    assert (spec.name, spec.layout, spec.channels, spec.map_shape) == ("features", "nhwc", 16, (4, 4))
    x = torch.stack([run_x for run_x, _ in (FakeImages(2, 32, 5)[i] for i in range(2))])
    act = output_of(swin, "features", x)
    stats = run.layer_stats("features")
    np.testing.assert_allclose(stats[..., :ACT], stats64(act.permute(0, 3, 1, 2)), rtol=1e-4, atol=1e-5)
    # relevance of a channels-last layer: Captum's [N, H, W, C] summed over H and W
    target = torch.as_tensor(run.outputs()["target"])
    relevance = LayerGradientXActivation(swin, swin.features).attribute(x, target=target).detach().sum((1, 2))
    assert rel_err(stats[..., STAT_NAMES.index(RELEVANCE)], relevance) <= 1e-4
    assert run.cam("features").shape == (2, 4, 4)


def test_conv1d_output_is_ncl_not_tokens(tmp_path):
    run = small_sweep(tmp_path, SequenceNet(), layers=["conv"])  # [N, 8, 16]: 8 channels along 16 positions
    (spec,) = run.spec.layers
    assert (spec.layout, spec.channels, spec.map_shape) == ("ncl", 8, (1, 16))
    assert run.layer_stats("conv").shape == (2, 8, len(STAT_NAMES)) and run.grad_x_act("conv").shape == (2, 1, 16)


def test_vision_transformer_default_is_tokens_of_the_last_block_input_norm(tmp_path):
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32,
                            num_classes=5).eval()
    nn.init.normal_(vit.heads.head.weight, std=0.02)  # torchvision zero-initializes it
    run = small_sweep(tmp_path, vit, size=32)
    (spec,) = run.spec.layers
    assert (spec.name, spec.layout, spec.channels, spec.map_shape) == (
        "encoder.layers.encoder_layer_1.ln_1", "tokens", 16, (4, 4))
    assert np.abs(run.cam(spec.name)).max() > 0  # patch tokens reach the output from here


def test_vector_layer_stores_stats_only_and_says_so_once(tmp_path):
    with pytest.warns(RuntimeWarning, match=r"head.*vector.*grad_x_act/grad_cam do not apply") as caught:
        run = small_sweep(tmp_path, tiny_cnn(), layers=["stage2", "head"])
    assert sum("vector" in str(w.message) for w in caught) == 1
    assert run.spec.layers[1].layout == "vector" and run.layer_stats("head").shape == (2, 5, len(STAT_NAMES))
    assert "grad_cam" not in run.group["layers/head"] and run.cam("stage2").shape == (2, 8, 8)


def test_channels_decided_from_the_producing_operation():
    conv_then_linear = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Flatten(2), nn.Linear(16, 6), nn.Flatten(), nn.Linear(24, 2))
    cases = [  # (model, input shape, layer, layout)
        (nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Flatten(), nn.Linear(512, 2)), (3, 8, 8), "0",
         "nchw"),  # [8, 8, 8]: C = H = W, the conv's own layout
        (conv_then_linear, (3, 4, 4), "1", "ncl"),  # [4, 16] after a 4-channel conv
        (conv_then_linear, (3, 4, 4), "2", "tokens"),  # [4, 6] after a Linear to 6
        (nn.Sequential(nn.Flatten(), nn.Linear(48, 5)), (3, 4, 4), "1", "vector"),
    ]
    for model, shape, layer, want in cases:
        assert layout_of(model.eval(), layer, shape) == want, (model, layer)


def test_undecidable_layer_is_a_config_error_naming_the_override(tmp_path):
    with pytest.raises(ConfigError, match=r"--layer-layout 0=nchw\|nhwc"):
        small_sweep(tmp_path, rescaled_cnn(), layers=["0", "1.stage2"])
    run = small_sweep(tmp_path, rescaled_cnn(), layers=["0", "1.stage2"], layer_layouts={"0": "nchw"})
    assert [(s.layout, s.channels) for s in run.spec.layers] == [("nchw", 3), ("nchw", 16)]


def test_override_through_the_api_is_checked_and_recorded(tmp_path):
    run = small_sweep(tmp_path, tiny_cnn(), layers=["stage2"], layer_layouts={"stage2": "nhwc"})
    assert (run.spec.layers[0].layout, run.spec.layers[0].channels) == ("nhwc", 16 // 2)  # [16, 8, 8] read as H, W, C
    assert open_run(tmp_path / "run.zarr").spec.layers[0].layout == "nhwc"
    with pytest.raises(ConfigError, match="needs a 2-d output"):
        small_sweep(tmp_path, tiny_cnn(), layers=["stage2"], layer_layouts={"stage2": "tokens"}, overwrite=True)
    with pytest.raises(ConfigError, match="layers of this sweep"):
        small_sweep(tmp_path, tiny_cnn(), layers=["stage2"], layer_layouts={"stage1": "nchw"}, overwrite=True)
    with pytest.raises(ConfigError, match="among nchw, nhwc"):
        small_sweep(tmp_path, tiny_cnn(), layers=["stage2"], layer_layouts={"stage2": "hwc"}, overwrite=True)


def test_default_layers_need_a_spatial_output(tmp_path):
    with pytest.raises(ConfigError, match="No layer of TinyCNN has a spatial output"):
        small_sweep(tmp_path, tiny_cnn(), size=1)


def test_override_through_the_cli(tmp_path):
    args = [*TINY, "--model", "tests.engine.models:rescaled_cnn", "--limit", "2", "--layers", "0",
            "--methods", "stats,grad_cam", "--out", str(tmp_path / "run.zarr")]
    assert_one_line_error(attrstream("sweep", *args), "--layer-layout 0=nchw|nhwc")
    done = attrstream("sweep", *args, "--layer-layout", "0=nchw")
    assert done.returncode == 0, done.stderr
    assert open_run(tmp_path / "run.zarr").spec.layers[0].layout == "nchw"
