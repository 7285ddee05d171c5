"""The shapes data set: deterministic items, masks that cover the objects, an invertible normalization."""

from __future__ import annotations

import pytest
import torch

from attrstream.engine.demo.shapes import MEAN, STD, ShapesDataset
from attrstream.engine.errors import ConfigError


@pytest.fixture(scope="module")
def items():
    data = ShapesDataset(200, seed=3, split="test")
    return data, *data.batch(range(len(data)))


def test_item_depends_only_on_seed_split_and_index(items):
    data, x, labels, masks = items
    other = ShapesDataset(1000, seed=3, split="test")  # a longer set: the same items at the same indices
    for i in (0, 7, 199):
        xi, label = other[i]
        assert torch.equal(xi, x[i]) and label == labels[i]
        assert torch.equal(other.mask(i), masks[i])
    assert torch.equal(data[-1][0], x[199])  # negative indices count from the end
    assert not torch.equal(ShapesDataset(200, seed=4, split="test")[0][0], x[0])
    assert not torch.equal(ShapesDataset(200, seed=3, split="train")[0][0], x[0])


def test_train_and_test_splits_share_no_image():
    train = ShapesDataset(300, image_size=16, split="train").batch(range(300))[0].flatten(1)
    test = ShapesDataset(300, image_size=16, split="test").batch(range(300))[0].flatten(1)
    assert torch.cdist(train, test).min() > 0


def test_items_are_well_formed(items):
    data, x, labels, masks = items
    assert x.shape == (200, 3, 64, 64) and x.dtype == torch.float32
    assert masks.shape == (200, 64, 64) and masks.dtype == torch.bool
    assert set(labels.tolist()) == set(range(len(data.classes)))
    assert x.min() >= (0 - MEAN) / STD and x.max() <= (1 - MEAN) / STD
    area = masks.float().mean((1, 2))
    assert area.min() > 0.01 and area.max() < 0.3  # an object, never the whole image
    assert not masks[:, 0, :].any() and not masks[:, -1, :].any()  # objects lie inside the frame
    assert not masks[:, :, 0].any() and not masks[:, :, -1].any()


def test_mask_covers_the_object(items):
    """Inside the mask the image has the object's one colour; just outside it, the background's."""
    _, x, _, masks = items
    rgb = x * STD + MEAN
    ring = torch.nn.functional.max_pool2d(masks[:, None].float(), 5, 1, 2)[:, 0].bool() & ~masks
    for img, inside, around in zip(rgb, masks, ring, strict=True):
        obj, bg = img[:, inside], img[:, around]
        assert obj.std(1).max() < 0.12  # flat colour plus pixel noise (sigma <= 0.08)
        assert (obj.mean(1) - bg.mean(1)).norm() > 0.25  # object colours are >= 0.4 from the background


def test_to_rgb_inverts_the_normalization(items):
    _, x, _, _ = items
    rgb = ShapesDataset.to_rgb(x)
    assert rgb.shape == (200, 64, 64, 3) and rgb.dtype == torch.uint8
    back = (rgb.permute(0, 3, 1, 2).float() / 255 - MEAN) / STD
    torch.testing.assert_close(back, x, rtol=0, atol=0.5 / 255 / STD + 1e-6)  # within half a grey level
    assert torch.equal(ShapesDataset.to_rgb(x[5]), rgb[5])  # one image works too


def test_empty_batch_and_empty_set():
    x, labels, masks = ShapesDataset(0, image_size=32).batch([])
    assert x.shape == (0, 3, 32, 32) and labels.shape == (0,) and masks.shape == (0, 32, 32)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n=-1), "number of shapes images"),
    (dict(n=2.5), "number of shapes images"),
    (dict(n=4, image_size=8), "image size"),
    (dict(n=4, seed="0"), "seed"),
    (dict(n=4, split="val"), "split to be one of train, test, got 'val'"),
])
def test_invalid_arguments_raise_config_error(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        ShapesDataset(**kwargs)


def test_out_of_range_index_raises_index_error():
    data = ShapesDataset(3)
    with pytest.raises(IndexError, match=r"\[0, 3\), got 3"):
        data[3]
    with pytest.raises(ConfigError, match="Expected normalized images"):
        ShapesDataset.to_rgb(torch.zeros(4, 64, 64))
