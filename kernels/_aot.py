"""Ahead-of-time compilation targets of every Triton kernel, for the CPU compile test.

The interpreter (``TRITON_INTERPRET=1``) accepts code that the compiler rejects (non-power-of-two
``tl.arange``, dtype mismatches), so each kernel module lists, in ``compile_targets()``, every
specialization its launchers can choose; ``tests/kernels/test_compile.py`` compiles them all for
sm_80 and sm_90 without a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The attribute Triton's JIT gives a pointer whose address, or an integer whose value, is a
# multiple of 16 (``BaseBackend.parse_attr``): it lets the compiler prove alignment and emit
# 128-bit vector loads and stores.
DIVISIBLE_BY_16 = [["tt.divisibility", 16]]


@dataclass(frozen=True)
class CompileTarget:
    """One specialization of one ``@triton.jit`` kernel.

    ``signature`` maps every argument name to a Triton type string (``"*fp32"``, ``"*fp16"``,
    ``"*bf16"``, ``"i32"``, ``"i64"``, ``"fp32"``) or ``"constexpr"``; ``constexprs`` gives the
    value of each constexpr argument, exactly as the launcher would pass it; ``attrs`` holds the
    specialization attributes as ``triton.compiler.ASTSource`` takes them, keyed by argument
    index path: ``{(3,): [["tt.divisibility", 16]]}`` (see :func:`aligned`).
    """

    kernel: Any  # triton.runtime.JITFunction
    signature: dict[str, str]
    constexprs: dict[str, Any] = field(default_factory=dict)
    attrs: dict[tuple[int, ...], list] = field(default_factory=dict)
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or getattr(self.kernel, "__name__", repr(self.kernel))

    @property
    def key(self) -> tuple:
        """What makes two targets one compilation (a shared kernel may be listed by two modules)."""
        return (self.kernel, *(repr(sorted(d.items())) for d in (self.signature, self.constexprs, self.attrs)))


def aligned(kernel: Any, signature: dict[str, str]) -> dict[tuple[int, ...], list]:
    """The ``attrs`` the JIT infers when every pointer is 16-byte aligned (as torch allocates) and
    every integer argument is a multiple of 16 (extents and strides of typical layers, e.g.
    ``[64, 256, 56, 56]``): each pointer and integer argument of ``signature`` divisible by 16."""
    return {
        (kernel.arg_names.index(name),): DIVISIBLE_BY_16
        for name, kind in signature.items()
        if kind.startswith("*") or kind in ("i32", "i64")
    }
