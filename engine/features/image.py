"""The optimized image: a Fourier-space parametrization with 1/f spectrum scaling and decorrelated colour.

As in Lucid/Lucent (Olah et al., "Feature Visualization", Distill 2017): the free parameters are
the real and imaginary parts of each colour channel's 2-D spectrum. Scaling frequency ``f`` by
``1 / max(f, 1/side)`` gives every frequency the same share of the gradient, instead of letting
the optimizer spend itself on high-frequency pixel noise that excites a channel without looking
like anything. The colour channels are decorrelated: a fixed 3×3 matrix (Lucid's square root of
ImageNet's colour covariance) mixes them into RGB, so that a step changes luminance and hue
separately. A sigmoid then bounds every pixel in ``(0, 1)``. One departure: the start is a visible
noise image, not a nearly grey one (:data:`SPECTRUM_SD`).

Everything here acts on each batch element on its own (an FFT per image, a per-pixel matrix):
nothing couples the channels optimized together.
"""

from __future__ import annotations

import torch

# Lucid's colour_correlation_svd_sqrt (rows: R, G, B; columns: the decorrelated channels).
COLOR_CORRELATION_SVD_SQRT = ((0.26, 0.09, 0.02), (0.27, 0.00, -0.05), (0.27, -0.09, 0.03))
# Standard deviation of the random initial spectrum: a visible 1/f noise image (pixel std ~0.13), not
# Lucid's nearly grey 0.01 (pixel std ~0.003), on which channels that are zero for flat inputs have no
# gradient to start from. Measured on the demo network's block3 (benchmarks/check_features.py, 64 px,
# while the optimization still ran on a grey-padded canvas, see transforms.py):
# 0 instead of 2-3 of 32 channels left at zero after 64 steps, diagonal dominance 53% instead of 22%
# (41% → 53% after 256 steps); on a random ResNet-18's layer2 94% instead of 97%.
SPECTRUM_SD = 1.0
SATURATION = 4.0  # Lucid's divisor of the spatial image: keeps the sigmoid away from saturation at the start
DECAY_POWER = 1.0  # the spectrum's 1/f^power scaling


def spectrum_shape(size: int) -> tuple[int, int, int, int]:
    """``(3, size, size // 2 + 1, 2)``: real and imaginary parts of a real image's 2-D spectrum."""
    return 3, size, size // 2 + 1, 2


def random_spectrum(generator: torch.Generator, size: int) -> torch.Tensor:
    """One image's initial spectrum, drawn on the CPU from its own generator (the same on every device)."""
    return torch.randn(spectrum_shape(size), generator=generator) * SPECTRUM_SD


class FourierImage:
    """Maps spectra ``[B, 3, S, S//2+1, 2]`` to pixels ``[B, 3, S, S]`` in ``(0, 1)``."""

    def __init__(self, size: int, device: torch.device) -> None:
        fy = torch.fft.fftfreq(size)[:, None]
        fx = torch.fft.rfftfreq(size)[None, :]
        freqs = torch.sqrt(fx * fx + fy * fy)
        self.size = size
        self.scale = (1.0 / freqs.clamp(min=1.0 / size) ** DECAY_POWER).to(device)[None, None, :, :, None]
        color = torch.tensor(COLOR_CORRELATION_SVD_SQRT)
        self.color = (color / color.norm(dim=0).max()).to(device)

    def pixels(self, spectrum: torch.Tensor) -> torch.Tensor:
        spatial = torch.fft.irfft2(torch.view_as_complex(self.scale * spectrum), s=(self.size, self.size), norm="ortho")
        rgb = torch.einsum("rc,bchw->brhw", self.color, spatial / SATURATION)
        return torch.sigmoid(rgb)
