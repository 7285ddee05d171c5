"""Defaults of the exports, apart from their heavy imports so that ``attrstream --help`` can show them."""

TENSORBOARD_EXAMPLES = 16  # examples in the image tabs, spread evenly over the finished ones
EMBEDDING_EXAMPLES = 1024  # rows of the projector at most (evenly spaced); the sprite holds one thumbnail each
HISTOGRAM_BINS = 30
