"""The engine's vocabulary: method names, layer layouts, storage dtypes and compressors, defined once, torch-free.

The CLI, the config, the store layout and the renderers all import these; the kernels' own names
(statistics, reductions) live in :mod:`attrstream.kernels.names`.
"""

from __future__ import annotations

INPUT_METHODS = ("grad_x_input", "saliency", "smoothgrad", "integrated_gradients")  # [N, H, W] input maps
MULTI_SAMPLE_METHODS = ("smoothgrad", "integrated_gradients")  # repeat the pass over an expanded batch
LAYER_MAP_METHODS = ("grad_x_act", "grad_cam")  # [N, h, w] maps of a layer
LAYER_METHODS = ("stats", *LAYER_MAP_METHODS)
ALL_METHODS = INPUT_METHODS + LAYER_METHODS
DEFAULT_METHODS = ("grad_x_input", "saliency", "stats", "grad_cam")
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the input normalization of torchvision's pretrained models
IMAGENET_STD = (0.229, 0.224, 0.225)
DTYPES = ("float16", "float32")  # map storage dtypes
COMPRESSORS = ("lz4", "zstd")
# How a layer's per-example output is read: [C,H,W], [H,W,C], 1-D conv [C,L], tokens [T,C], or [C]
LAYER_LAYOUTS = ("nchw", "nhwc", "ncl", "tokens", "vector")
FAITHFULNESS_METRICS = ("deletion", "insertion")  # `attrstream evaluate`: curves of every stored map
