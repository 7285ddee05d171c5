"""The embedded default: a data set, a model and a score that need no download.

- :mod:`.shapes`: ``ShapesDataset``, seeded synthetic images with ground-truth object masks.
- :mod:`.model`: ``ShapesNet``, a small CNN with named stages (``block1``..``block3``, ``pool``, ``fc``).
- :mod:`.train`: ``load_or_train``, deterministic CPU training on first use, cached by recipe hash.
- :mod:`.localization`: pointing game and energy fraction of maps against the masks (numpy only).

Submodules are imported on use, so importing this package costs nothing.
"""
