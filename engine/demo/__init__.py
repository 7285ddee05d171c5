"""The embedded default: a data set, a model and a score that need no download.

- :mod:`.shapes`: ``ShapesDataset``, seeded synthetic images with ground-truth object masks.
- :mod:`.model`: ``ShapesNet``, a small CNN with named stages (``block1``..``block3``, ``pool``, ``fc``).
- :mod:`.train`: ``load_or_train``, deterministic CPU training on first use, cached by recipe hash.
- :mod:`.localization`: pointing game and energy fraction of maps against the masks (numpy only).

Importing this package registers ``shapesnet`` (model) and ``shapes`` (data) with the engine's
registries; the engine core never imports the demo. Submodules are imported on use.
"""

from __future__ import annotations

from attrstream.engine.data import DataSpec, register_dataset
from attrstream.engine.models import ModelSpec, register_model


def _shapesnet(spec: ModelSpec):
    from attrstream.engine.demo.model import ShapesNet
    from attrstream.engine.demo.shapes import ShapesDataset

    if spec.weights is None:  # the trained demo network (cached after the first use)
        from attrstream.engine.demo.train import load_or_train

        return load_or_train()[0]
    return ShapesNet(num_classes=spec.num_classes or len(ShapesDataset.classes))


def _shapes(spec: DataSpec):
    from attrstream.engine.demo.shapes import ShapesDataset

    return ShapesDataset(n=512, image_size=spec.image_size or 64, seed=spec.seed, split="test")


register_model("shapesnet", _shapesnet)
register_dataset("shapes", _shapes)
