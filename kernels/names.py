"""The kernels' vocabulary: names that the ops produce and accept, defined once, torch-free.

Stores, readers and renderers import these names without importing torch; the op modules derive
their constants (the reduction codes of the map kernel, the stat columns) from them.
"""

from __future__ import annotations

STAT_NAMES = ("mean", "std", "min", "max", "frac_pos")  # columns of channel_stats, in order
REDUCTIONS = ("sum", "abs_sum", "l2", "max_abs")  # channel reductions of product_map / layer_maps
SALIENCY_REDUCTIONS = ("max_abs", "abs_sum", "l2")  # saliency reduces |g|: a signed sum is meaningless
LAYOUTS = ("nchw", "tokens")  # channel_stats input layouts: [N,C,H,W] (any strides) or [N,T,C]
