"""Every Triton kernel compiles ahead of time, for every specialization its launcher can choose.

The interpreter that runs the other kernel tests accepts code the compiler rejects (a
non-power-of-two ``tl.arange``, mismatched dtypes), so each kernel module lists its
specializations in ``compile_targets()`` (``tests/kernels/conftest.py`` checks that every launch
of the kernel tests is among them), including the divisibility attributes the JIT infers on
aligned inputs (they turn on 128-bit vector loads), and this test builds them all for sm_80 and
sm_90 without a GPU. ``TRITON_INTERPRET=1`` (set for the suite) turns ``triton.jit`` into
interpreter objects at import, so the compilation runs in a subprocess per architecture with the
variable unset and a fresh cache (a cache hit would skip ``ptxas`` and its register report).
``pytest -s`` prints a table of registers and spills, as ``ptxas -v`` reports them.

Run alone: ``python -m tests.kernels.test_compile 90`` prints one JSON line per target.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys

import pytest

CCS = (80, 90)


def _compile_all(cc: int) -> list[dict]:
    """Compile every target of every kernel module for ``sm_<cc>``; one record per target."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.runtime.jit import JITFunction

    from tests.kernels._launches import kernel_modules

    triton.knobs.nvidia.dump_ptxas_log = True  # ptxas -v output, for registers and spills
    records, seen = [], set()
    for module in kernel_modules():
        for target in getattr(module, "compile_targets", list)():
            if target.key in seen:  # a shared kernel listed by two modules: compile and report it once
                continue
            seen.add(target.key)
            record = {"module": module.__name__.rpartition(".")[2], "target": target.name, "cc": cc}
            log = io.StringIO()
            try:
                assert isinstance(target.kernel, JITFunction), f"not a JIT function: {target.kernel!r}"
                src = ASTSource(target.kernel, target.signature, target.constexprs, target.attrs)
                with contextlib.redirect_stdout(log):
                    kernel = triton.compile(src, target=GPUTarget("cuda", cc, 32))
                ptx = kernel.asm.get("ptx") or ""
                record |= {"ptx": bool(ptx), "cubin": bool(kernel.asm.get("cubin")), "aligned": bool(target.attrs),
                           "vector_loads": "ld.global.v" in ptx}
                record |= _ptxas_report(log.getvalue())
            except Exception as err:  # reported per target, so one failure does not hide the others
                record["error"] = f"{type(err).__name__}: {err}"[:2000]
            records.append(record)
    return records


def _ptxas_report(log: str) -> dict:
    found = {
        "registers": re.search(r"Used (\d+) registers", log),
        "spill_stores": re.search(r"(\d+) bytes spill stores", log),
        "spill_loads": re.search(r"(\d+) bytes spill loads", log),
    }
    return {key: int(m.group(1)) if m else None for key, m in found.items()}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict[int, list[dict]]:
    """Both architectures compiled at once, one subprocess each (two cores, two compilers)."""
    procs = {}
    for cc in CCS:
        env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
        env["TRITON_CACHE_DIR"] = str(tmp_path_factory.mktemp(f"triton_cache_sm{cc}"))
        procs[cc] = subprocess.Popen(
            [sys.executable, "-m", "tests.kernels.test_compile", str(cc)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    results = {}
    for cc, proc in procs.items():
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"compile subprocess for sm_{cc} failed:\n{err[-4000:]}"
        results[cc] = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return results


@pytest.mark.parametrize("cc", CCS)
def test_every_kernel_compiles(compiled, cc):
    records = compiled[cc]
    modules = {r["module"] for r in records}
    assert "_channel_stats" in modules, f"no compile targets discovered, got modules {sorted(modules)}"
    print(f"\nsm_{cc}: {len(records)} targets from {', '.join(sorted(modules))}")
    print(f"{'target':<60} {'regs':>5} {'spill st':>9} {'spill ld':>9}")
    for r in records:
        status = r.get("error", "")[:60] if "error" in r else ""
        cells = [str(r.get(k, "-")) if r.get(k) is not None else "-" for k in ("registers", "spill_stores", "spill_loads")]
        print(f"{r['target']:<60} {cells[0]:>5} {cells[1]:>9} {cells[2]:>9} {status}")
    failures = [f"{r['target']}: {r['error']}" for r in records if "error" in r]
    assert not failures, f"{len(failures)} targets failed for sm_{cc}:\n" + "\n".join(failures)
    missing = [r["target"] for r in records if not (r["ptx"] and r["cubin"])]
    assert not missing, f"no PTX or cubin for: {missing}"
    scalar = [r["target"] for r in records if r["aligned"] and not r["vector_loads"]]
    assert not scalar, f"aligned targets without vector loads: {scalar}"


if __name__ == "__main__":
    for record in _compile_all(int(sys.argv[1])):
        print(json.dumps(record), flush=True)
