"""The names the kernels speak in, defined once; torch-free, so stores and renderers can import them.

The engine, the store and the tests import these instead of spelling them again: a statistic added here reaches the store's ``stat`` coordinate, and a
reduction added here reaches the kernel's ``REDUCE`` code, with no second list to keep in step.
"""

from __future__ import annotations

# channel_stats: the order of its last axis. The statistics of an activation alone ...
ACTIVATION_STAT_NAMES = ("mean", "std", "min", "max", "frac_pos")
# ... then, given the gradient g of the target score, ``relevance`` = Σ over space of a·g per
# (example, channel): concept relevance, Captum's ``LayerGradientXActivation`` summed over space.
# With g the last axis is ``[N, C, len(STAT_NAMES)]``; a sweep always has g, so its stores hold
# STAT_NAMES (older stores hold ACTIVATION_STAT_NAMES: readers go by the store's ``stat`` coordinate).
RELEVANCE = "relevance"
STAT_NAMES = (*ACTIVATION_STAT_NAMES, RELEVANCE)

# channel_stats inputs: ``[N,C,H,W]`` or transformer tokens ``[N,T,C]``.
LAYOUTS = ("nchw", "tokens")

# product_map and layer_maps: how x·g is reduced over channels. The channel-map kernel's REDUCE
# constexpr is the index in this tuple.
REDUCTIONS = ("sum", "abs_sum", "l2", "max_abs")

# saliency: how |g| is reduced over channels (a subset of REDUCTIONS; the first is the default).
SALIENCY_REDUCTIONS = ("max_abs", "abs_sum", "l2")
