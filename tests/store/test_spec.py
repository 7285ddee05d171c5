"""RunSpec validation and fingerprint."""

from __future__ import annotations

import pytest

from attrstream.engine.errors import ConfigError
from attrstream.engine.store import LayerSpec, RunSpec
from tests.store._helpers import small_spec


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(methods=("gradxinput",)), r"methods among grad_x_input, .*got 'gradxinput'"),
        (dict(layer_methods=("gradcam",)), r"Close matches: grad_cam"),
        (dict(unit=0), r"unit > 0"),
        (dict(n=-1), r"n >= 0"),
        (dict(topk=8), r"0 <= topk <= num_classes=7, got 8"),
        (dict(dtype="bfloat16"), r"dtype among float16, float32, got 'bfloat16'"),
        (dict(compressor="gzip"), r"compressor among lz4, zstd"),
        (dict(layers=(LayerSpec("a", 1), LayerSpec("a", 2))), r"distinct layer names"),
        (dict(layer_methods=()), r"layer_methods for layers"),
        (dict(input_shape=(8, 6)), r"input_shape \(C, H, W\)"),
        (dict(config={"f": object()}), r"JSON-serializable config"),
    ],
)
def test_invalid_specs_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        small_spec(**overrides)


@pytest.mark.parametrize("name", ["a/b", "", "__x"])
def test_layer_names_must_be_group_names(name):
    with pytest.raises(ConfigError, match="layer name"):
        LayerSpec(name, 3)


def test_fingerprint_round_trips_and_ignores_only_the_compressor():
    spec = small_spec()
    assert RunSpec.from_dict(spec.to_dict()) == spec
    assert RunSpec.from_dict(spec.to_dict()).fingerprint() == spec.fingerprint()
    assert small_spec(compressor="zstd").fingerprint() == spec.fingerprint()
    for change in (dict(n=11), dict(unit=5), dict(dtype="float32"), dict(config={"model": "other"}),
                   dict(layers=(LayerSpec("layer4.1.conv2", 4, (2, 4)),))):
        assert small_spec(**change).fingerprint() != spec.fingerprint(), change
    assert spec.n_units() == 3 and small_spec(n=0).n_units() == 0
