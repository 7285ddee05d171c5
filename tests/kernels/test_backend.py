"""The dispatcher: which implementation runs, and loud failures when an explicit choice cannot."""

from __future__ import annotations

import pytest
import torch

from attrstream.kernels import Backend, BackendError, KernelInputError, _backend, channel_stats
from attrstream.kernels._backend import ENV_VAR, requested, resolve
from attrstream.kernels._channel_stats import channel_stats_torch

CPU = torch.zeros(1, 2, 3, 3)


@pytest.mark.parametrize(
    "value,want",
    [("torch", Backend.TORCH), ("TRITON", Backend.TRITON), ("Compile", Backend.COMPILE), ("auto", Backend.AUTO)],
)
def test_env_var_is_parsed_case_insensitively(monkeypatch, value, want):
    monkeypatch.setenv(ENV_VAR, value)
    assert requested() is want


def test_argument_wins_over_env_var(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "triton")
    assert requested("torch") is Backend.TORCH
    assert requested(Backend.COMPILE) is Backend.COMPILE


def test_unset_env_var_means_auto(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert requested() is Backend.AUTO


def test_bad_value_lists_the_allowed_ones(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "cuda")
    with pytest.raises(KernelInputError, match=r"\(auto, torch, triton, compile\), got 'cuda'"):
        resolve(CPU)
    with pytest.raises(KernelInputError, match="got 'fast'"):
        channel_stats(CPU, backend="fast")


def test_auto_on_cpu_is_torch(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert resolve(CPU) is Backend.TORCH  # even under the interpreter: auto never picks it for CPU


def test_explicit_triton_on_cpu_without_interpreter_fails_loudly(monkeypatch):
    monkeypatch.setattr(_backend, "interpreting", lambda: False)
    with pytest.raises(BackendError, match=r"tensors on cpu.*TRITON_INTERPRET=1"):
        resolve(CPU, backend="triton")
    monkeypatch.setenv(ENV_VAR, "triton")
    with pytest.raises(BackendError, match="tensors on cpu"):
        channel_stats(CPU)


def test_explicit_triton_under_interpreter_runs_triton(monkeypatch):
    monkeypatch.setattr(_backend, "interpreting", lambda: True)
    assert resolve(CPU, backend="triton") is Backend.TRITON


def test_triton_that_does_not_import(monkeypatch):
    monkeypatch.setattr(_backend, "triton_import_error", lambda: "ImportError: no module named 'triton'")
    with pytest.raises(BackendError, match=r"does not import.*no module named 'triton'"):
        resolve(CPU, backend="triton")
    assert resolve(CPU) is Backend.TORCH  # auto falls back quietly


@pytest.mark.parametrize("value", ["", "0"])
def test_interpreting_reads_the_env_var(monkeypatch, value):
    monkeypatch.setenv("TRITON_INTERPRET", value)
    assert not _backend.interpreting()
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert _backend.interpreting()


def test_dispatch_calls_the_chosen_implementation():
    calls = []
    out = _backend.dispatch(lambda x: calls.append("torch"), lambda x: calls.append("triton"), (CPU,), "torch", CPU)
    assert out is None and calls == ["torch"]


def test_compile_backend_matches_torch():
    """torch.compile of the reference (inductor, C++ on CPU): one tiny shape."""
    a = torch.randn(2, 3, 5, 4, generator=torch.Generator().manual_seed(0))
    try:
        got = channel_stats(a, backend="compile")
    except torch._dynamo.exc.BackendCompilerFailed as err:  # no working C++ toolchain here
        pytest.skip(f"inductor cannot compile on this machine: {err}")
    torch.testing.assert_close(got, channel_stats_torch(a), rtol=1e-6, atol=1e-6)
