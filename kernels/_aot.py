"""Ahead-of-time compilation targets of every Triton kernel, for the CPU compile test.

The interpreter (``TRITON_INTERPRET=1``) accepts code that the compiler rejects (non-power-of-two
``tl.arange``, dtype mismatches), so each kernel module lists, in ``compile_targets()``, every
specialization its launchers can choose; ``tests/kernels/test_compile.py`` compiles them all for
sm_80 and sm_90 without a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class CompileTarget:
    """One specialization of one ``@triton.jit`` kernel.

    ``signature`` maps every argument name to a Triton type string (``"*fp32"``, ``"*fp16"``,
    ``"*bf16"``, ``"i32"``, ``"i64"``, ``"fp32"``) or ``"constexpr"``; ``constexprs`` gives the
    value of each constexpr argument, exactly as the launcher would pass it.
    """

    kernel: Any  # triton.runtime.JITFunction
    signature: dict[str, str]
    constexprs: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or getattr(self.kernel, "__name__", repr(self.kernel))
