"""What the kernel tests control and observe about launches: forced tiles, no launch at all, and
a recorder of the specialization of every launch, checked against ``compile_targets()``.

The interpreter runs code the compiler rejects, so ``test_compile`` compiles each kernel module's
``compile_targets()``; the recorder ties that list to what the launchers really choose. For every
launch it derives, with the JIT's own binder (``JITFunction``'s ``specialize_impl`` and
``_pack_args``, for an sm_90 target), the signature dtypes, constexprs, integer widths and
divisibility attributes that the JIT would compile, and looks for a target that covers them: the
same kernel, pointer dtypes, launcher constexprs (tiles, flags, reduce) and options (warps),
and, for the JIT's data-dependent choices, a target no more specialized than the launch (an int
the JIT folds to the constant 1, or a divisibility the launch has but the target does not assume,
is a special case of the target's code; an integer width or a divisibility the target assumes and
the launch lacks is not).
"""

from __future__ import annotations

import contextlib
import importlib
import pkgutil
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any
from unittest import mock

from attrstream.kernels import _channel_stats, _maps

# The tiles forced by the innermost active ``forced_blocks``: launches under it are test-only.
_forcing: list[tuple[int, int]] = []


@contextlib.contextmanager
def forced_blocks(blocks: tuple[int, int]) -> Iterator[None]:
    """Every launcher uses the tile (channels, positions) ``blocks``: tiny tiles make channel and
    space loops run several steps with tails on shapes small enough for the interpreter."""
    assert all(b >= 1 and b & (b - 1) == 0 for b in blocks), f"tiles are powers of two, got {blocks}"
    with mock.patch.object(_maps, "_pick_blocks", lambda *_: blocks), \
            mock.patch.object(_channel_stats, "_choose_blocks", lambda *_, **__: blocks):  # fmt: skip
        _forcing.append(blocks)
        try:
            yield
        finally:
            _forcing.pop()


@contextlib.contextmanager
def no_map_launch() -> Iterator[None]:
    """Any launch of the map kernels fails inside this block (empty inputs must not launch)."""
    with mock.patch.object(_maps, "_channel_maps_kernel", None), mock.patch.object(_maps, "_normalize_kernel", None):
        yield


def kernel_modules() -> list[ModuleType]:
    """Every module of the kernel package (a new op module is found without being listed)."""
    import attrstream.kernels

    return [importlib.import_module(f"attrstream.kernels.{info.name}")
            for info in pkgutil.iter_modules(attrstream.kernels.__path__)]


@dataclass(frozen=True)
class Spec:
    """One specialization: ``signature`` name → Triton type or ``constexpr``; ``constexprs`` and
    ``attrs`` (divisibility, as sets of pairs) by argument name."""

    kernel: str
    signature: dict[str, str]
    constexprs: dict[str, Any]
    attrs: dict[str, frozenset]
    options: tuple = ()

    def __str__(self) -> str:
        ints = {n: t for n, t in self.signature.items() if t != "constexpr"}
        aligned = sorted(n for n, a in self.attrs.items() if a)
        return f"{self.kernel} {ints} constexprs={self.constexprs} divisible_by_16={aligned} options={self.options}"


def _named(names: list[str], by_path: dict) -> dict[str, Any]:
    return {names[path[0]] if isinstance(path, tuple) else path: value for path, value in by_path.items()}


def _attr_set(attrs: list) -> frozenset:
    return frozenset(tuple(a) for a in attrs)


class LaunchRecorder:
    """Wraps every ``*_kernel`` of the kernel package; records uncovered launches in ``uncovered``."""

    def __init__(self) -> None:
        from triton.backends.compiler import GPUTarget
        from triton.compiler import make_backend

        self.backend = make_backend(GPUTarget("cuda", 90, 32))
        self.default_options = self._options(self.backend.parse_options({}))
        self.targets: dict[Any, list[Spec]] = {}
        for module in kernel_modules():
            for target in getattr(module, "compile_targets", list)():
                names = target.kernel.arg_names
                spec = Spec(target.name, target.signature, _named(names, target.constexprs),
                            {k: _attr_set(v) for k, v in _named(names, target.attrs).items()}, self.default_options)
                self.targets.setdefault(target.kernel.fn, []).append(spec)
        self.launches = 0
        self.uncovered: list[Spec] = []
        self._binders: dict[Any, tuple] = {}

    @staticmethod
    def _options(options: Any) -> tuple:
        return tuple((k, getattr(options, k)) for k in ("num_warps", "num_ctas", "num_stages"))

    def install(self, patcher: Any) -> None:
        """Wrap the kernels with ``patcher.setattr`` (a pytest MonkeyPatch, undone by its owner)."""
        from triton.runtime.jit import KernelInterface

        for module in kernel_modules():
            for name, kernel in list(vars(module).items()):
                if name.endswith("_kernel") and isinstance(kernel, KernelInterface):
                    patcher.setattr(module, name, _Recording(kernel, self))

    def specialization(self, kernel: Any, args: tuple, kwargs: dict) -> Spec:
        """What the JIT would compile for this launch (its own binder, for an sm_90 target)."""
        from triton.runtime.jit import JITFunction, create_function_from_signature

        if kernel.fn not in self._binders:
            jit = kernel if isinstance(kernel, JITFunction) else JITFunction(kernel.fn)
            self._binders[kernel.fn] = jit, create_function_from_signature(jit.signature, jit.params, self.backend)
        jit, binder = self._binders[kernel.fn]
        bound, specialization, options = binder(*args, **kwargs)
        options, signature, constexprs, attrs = jit._pack_args(self.backend, kwargs, bound, specialization, options)
        return Spec(jit.__name__, signature, _named(jit.arg_names, constexprs),
                    {k: _attr_set(v) for k, v in _named(jit.arg_names, attrs).items()}, self._options(options))

    def covered(self, kernel: Any, launch: Spec) -> bool:
        declared = {p.name for p in self._binders[kernel.fn][0].params if p.is_constexpr}
        return any(_covers(t, launch, declared) for t in self.targets.get(kernel.fn, []))

    def record(self, kernel: Any, args: tuple, kwargs: dict) -> None:
        if _forcing:
            return
        self.launches += 1
        launch = self.specialization(kernel, args, kwargs)
        if not self.covered(kernel, launch):
            self.uncovered.append(launch)

    @contextlib.contextmanager
    def capture(self) -> Iterator[list[Spec]]:
        """The uncovered launches of the block, kept out of ``uncovered`` (for tests of the recorder)."""
        outer, self.uncovered = self.uncovered, []
        try:
            yield self.uncovered
        finally:
            self.uncovered = outer


def _covers(target: Spec, launch: Spec, declared: set[str]) -> bool:
    if target.options != launch.options or target.signature.keys() != launch.signature.keys():
        return False
    for name, kind in launch.signature.items():
        wanted = target.signature[name]
        if name in declared or wanted == "constexpr":
            if kind != "constexpr" or launch.constexprs[name] != target.constexprs[name]:
                return False
        elif kind == "constexpr":  # the JIT folded an int equal to 1: covered unless assumed divisible
            if target.attrs.get(name):
                return False
        elif kind != wanted or not target.attrs.get(name, frozenset()) <= launch.attrs.get(name, frozenset()):
            return False
    return True


class _Recording:
    """A kernel that reports each launch to the recorder, then launches."""

    def __init__(self, kernel: Any, recorder: LaunchRecorder) -> None:
        self.kernel, self.recorder = kernel, recorder

    def __getitem__(self, grid: Any) -> Any:
        def launch(*args: Any, **kwargs: Any) -> Any:
            self.recorder.record(self.kernel, args, kwargs)
            return self.kernel[grid](*args, **kwargs)

        return launch

    def __getattr__(self, name: str) -> Any:
        return getattr(self.kernel, name)
