"""SmoothGrad and Integrated Gradients: input gradients averaged over many points per example.

The points (noisy copies, or steps along the path from a zero baseline) of a batch number
``samples × N``; they are forwarded ``chunk`` at a time (``internal_batch_size``), so peak memory
is that of one chunk, whatever the sample count, and the gradients are accumulated per example in
float32. Every point is defined by its (example, sample) pair alone — SmoothGrad's noise is seeded
by both — so the maps do not depend on the chunk size, the batch size or the batch an example
shares, up to float32 rounding of the accumulation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from attrstream.engine.errors import ConfigError

MAX_SAMPLES = 1 << 16  # sample indices share a noise seed with the example index: (example << 16) | sample


def noise_seed(example: int, sample: int) -> int:
    """The generator seed of SmoothGrad's noise for ``sample`` of data set example ``example``."""
    return (int(example) << 16) | int(sample)


def smoothgrad_noise(shape: tuple[int, ...], examples: torch.Tensor, samples: torch.Tensor,
                     device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Standard normal noise ``[k, *shape]``: row r is ``randn(shape)`` seeded by (examples[r], samples[r])."""
    noise = torch.empty((len(examples), *shape), device=device, dtype=dtype)
    for row, (example, sample) in enumerate(zip(examples.tolist(), samples.tolist(), strict=True)):
        gen = torch.Generator(device=device).manual_seed(noise_seed(example, sample))
        noise[row] = torch.randn(shape, generator=gen, device=device, dtype=dtype)
    return noise


Points = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (sample idx [k], row idx [k]) -> points [k, C, H, W]
Forward = Callable[[torch.Tensor], torch.Tensor]  # points -> logits [k, K] (float32)


def averaged_input_grads(forward: Forward, points: Points, target: torch.Tensor, n: int, samples: int,
                         chunk: int, combine: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``mean over s of combine(d logit[target] / d point(s, i))`` per row i, float32 ``[n, C, H, W]``.

    Points are taken in sample-major order (s, i), ``chunk`` per forward and backward.
    """
    total: torch.Tensor | None = None
    for start in range(0, samples * n, chunk):
        flat = torch.arange(start, min(start + chunk, samples * n), device=target.device)
        s_idx, rows = flat // n, flat % n
        pts = points(s_idx, rows).detach().requires_grad_(True)
        logits = forward(pts)
        (grad,) = torch.autograd.grad(logits.gather(1, target[rows][:, None]).sum(), pts)
        part = combine(grad).float()
        if total is None:
            total = torch.zeros((n, *part.shape[1:]), dtype=torch.float32, device=part.device)
        total.index_add_(0, rows, part)
    assert total is not None
    return total / samples


def multi_sample_grads(model_forward: Forward, x: torch.Tensor, examples: torch.Tensor, target: torch.Tensor, *,
                       method: str, samples: int, chunk: int, noise: float = 0.15) -> torch.Tensor:
    """The averaged gradient map input of ``method`` (smoothgrad: mean |g|; integrated_gradients: mean g)."""
    if int(target.min()) < 0:
        raise ConfigError("smoothgrad and integrated_gradients explain a class: the target callable must return class indices.")
    if samples >= MAX_SAMPLES:
        raise ConfigError(f"Expected fewer than {MAX_SAMPLES} samples or steps, got {samples}.")
    n = len(x)
    if method == "smoothgrad":
        span = (x.flatten(1).amax(1) - x.flatten(1).amin(1)).view(-1, 1, 1, 1) * noise
        cpu_examples = examples.to("cpu")

        def points(s_idx: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            eps = smoothgrad_noise(tuple(x.shape[1:]), cpu_examples[rows.cpu()], s_idx.cpu(), x.device, x.dtype)
            return x[rows] + eps * span[rows]

        return averaged_input_grads(model_forward, points, target, n, samples, chunk, torch.abs)
    alphas = (torch.arange(samples, device=x.device, dtype=x.dtype) + 0.5) / samples  # Riemann midpoints, zero baseline

    def path(s_idx: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return alphas[s_idx].view(-1, 1, 1, 1) * x[rows]

    return averaged_input_grads(model_forward, path, target, n, samples, chunk, lambda g: g)
