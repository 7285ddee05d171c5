"""Device→host copy of a batch's small results, overlapped with the next batch's compute.

On CUDA each batch's tensors go into pinned buffers with one non-blocking copy each; the copy is
waited for only when the following batch has been launched, so the GPU never idles on the host.
On CPU the tensors are already on the host: the copy is a view.
"""

from __future__ import annotations

import numpy as np
import torch

Ready = tuple[int, dict[str, np.ndarray]]


class HostCopier:
    """Double-buffered pinned staging: at most one batch in flight while the next computes."""

    def __init__(self, device: torch.device):
        self.device = device
        self._pending: tuple[int, dict[str, torch.Tensor], dict[str, np.ndarray], torch.cuda.Event] | None = None
        self._buffers: list[dict[str, torch.Tensor]] = [{}, {}]
        self._turn = 0

    def _staging(self, key: str, t: torch.Tensor) -> torch.Tensor:
        bufs = self._buffers[self._turn]
        buf = bufs.get(key)
        if buf is None or buf.shape != t.shape or buf.dtype != t.dtype:
            buf = bufs[key] = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        return buf

    def submit(self, start: int, results: dict[str, torch.Tensor], host: dict[str, np.ndarray]) -> Ready | None:
        """Queue this batch's copy; return the previous batch as host arrays (or None)."""
        if self.device.type != "cuda":
            host.update({k: v.detach().numpy() for k, v in results.items()})
            return start, host
        staged = {k: self._staging(k, v).copy_(v.detach(), non_blocking=True) for k, v in results.items()}
        event = torch.cuda.Event()
        event.record()
        self._turn ^= 1
        previous = self.drain()
        self._pending = (start, staged, host, event)
        return previous

    def drain(self) -> Ready | None:
        """Wait for the batch in flight, if any, and return it as host arrays."""
        if self._pending is None:
            return None
        start, staged, host, event = self._pending
        self._pending = None
        event.synchronize()
        host.update({k: v.numpy() for k, v in staged.items()})
        return start, host
