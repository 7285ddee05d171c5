"""ShapesNet and load_or_train: named layers, deterministic training, an atomic, self-checking cache."""

from __future__ import annotations

import warnings

import pytest
import torch

from attrstream.engine.demo.model import ShapesNet
from attrstream.engine.demo.train import TrainConfig, load_or_train
from attrstream.engine.errors import ConfigError

# A recipe that trains in about a second: exercises the machinery, not the accuracy.
TINY = TrainConfig(n_train=64, n_test=16, batch_size=32, image_size=32, widths=(4, 8, 8))


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_shapesnet_stages_are_named_and_keep_block3_resolution():
    model = ShapesNet(5)
    names = [name for name, _ in model.named_children()]
    assert names == ["block1", "block2", "block3", "pool", "fc"]
    shapes = {}
    hooks = [getattr(model, n).register_forward_hook(lambda m, i, o, n=n: shapes.__setitem__(n, o.shape))
             for n in names[:3]]
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 5)
    for hook in hooks:
        hook.remove()
    assert shapes == {"block1": (2, 8, 32, 32), "block2": (2, 16, 16, 16), "block3": (2, 32, 16, 16)}
    assert "block3.conv2" in dict(model.named_modules())


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_classes=1), "num_classes"),
    (dict(num_classes=5, widths=(8, 8)), "three positive block widths"),
])
def test_shapesnet_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        ShapesNet(**kwargs)


def test_train_config_validates():
    with pytest.raises(ConfigError, match="n_train as an integer >= 1, got 0"):
        TrainConfig(n_train=0)
    with pytest.raises(ConfigError, match="lr > 0"):
        TrainConfig(lr=0.0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One training of the tiny recipe, shared: the reference weights and their cache file."""
    cache = tmp_path_factory.mktemp("cache")
    rng_before, threads_before = torch.random.get_rng_state(), torch.get_num_threads()
    model, info = load_or_train(cache, config=TINY, verbose=False)
    # The caller's RNG, thread count and determinism flag are as they were.
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    assert torch.get_num_threads() == threads_before and not torch.are_deterministic_algorithms_enabled()
    return model, info


def test_trains_once_then_loads_from_cache(tiny):
    model, info = tiny
    assert info.trained_now and info.cache_path.exists() and not model.training
    assert 0.0 <= info.accuracy <= 1.0 and info.train_seconds > 0
    assert [p.name for p in info.cache_path.parent.iterdir()] == [info.cache_path.name]  # no temp file left

    again, info2 = load_or_train(info.cache_path.parent, config=TINY, verbose=False)
    assert not info2.trained_now and info2.cache_path == info.cache_path
    assert (info2.accuracy, info2.train_seconds) == (info.accuracy, info.train_seconds)
    assert _same_weights(model, again) and not again.training


def test_a_changed_recipe_has_another_cache_file():
    names = {config.fingerprint() for config in (TINY, TrainConfig(**{**TINY.__dict__, "seed": 1}),
                                                        TrainConfig(**{**TINY.__dict__, "widths": (4, 8, 16)}))}
    assert len(names) == 3


@pytest.mark.parametrize("corrupt", [
    lambda path: path.write_bytes(path.read_bytes()[:100]),  # truncated: unreadable
    lambda path: torch.save({"fingerprint": "0" * 16, "state_dict": {}, "accuracy": 1.0, "train_seconds": 1.0},
                            path),  # readable, but for another recipe
], ids=["truncated", "other-recipe"])
def test_a_corrupt_cache_is_retrained_deterministically_with_a_warning(tiny, tmp_path, corrupt):
    model, info = tiny
    path = tmp_path / info.cache_path.name
    path.write_bytes(info.cache_path.read_bytes())
    corrupt(path)
    with pytest.warns(RuntimeWarning, match="corrupt demo model cache"):
        again, info2 = load_or_train(tmp_path, config=TINY, verbose=False)
    assert info2.trained_now and _same_weights(model, again)  # training is deterministic
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rewritten file loads cleanly
        assert not load_or_train(tmp_path, config=TINY, verbose=False)[1].trained_now


def test_cache_dir_defaults_to_the_environment_variable(tiny, tmp_path, monkeypatch):
    _, info = tiny
    monkeypatch.setenv("ATTRSTREAM_CACHE", str(tmp_path / "env-cache"))
    (tmp_path / "env-cache").mkdir()
    (tmp_path / "env-cache" / info.cache_path.name).write_bytes(info.cache_path.read_bytes())
    _, found = load_or_train(config=TINY)
    assert not found.trained_now and found.cache_path.parent == tmp_path / "env-cache"
