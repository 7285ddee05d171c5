"""The dependency rules the architecture relies on, checked in fresh interpreters.

The engine core never imports the demo (the demo registers into the core's registries); reading a
store never imports the code that creates or resumes one; the renderer never imports torch.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def loaded_modules(code: str) -> set[str]:
    """The ``attrstream`` (and ``torch``) modules a fresh interpreter holds after running ``code``."""
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted(m for m in sys.modules if m.startswith(('attrstream', 'torch')))))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_a_sweep_through_the_api_never_imports_the_demo(tmp_path: Path) -> None:
    modules = loaded_modules(
        "from attrstream.engine import sweep\n"
        "from attrstream.engine.data import FakeImages\n"
        "from tests.engine.models import tiny_cnn\n"
        f"sweep(tiny_cnn(), FakeImages(n=4, image_size=16, num_classes=5), {str(tmp_path / 'run.zarr')!r},\n"
        "      layers=['stage2'], methods=['grad_x_input', 'stats', 'grad_cam'], batch_size=4, progress=False)\n"
    )
    assert "attrstream.engine.pipeline" in modules
    assert not {m for m in modules if m.startswith("attrstream.engine.demo")}


def test_the_demo_names_are_registered_by_the_demo_package() -> None:
    modules = loaded_modules(
        "import attrstream.engine.demo\n"
        "from attrstream.engine.models import registered_models\n"
        "from attrstream.engine.data import build_dataset\n"
        "from attrstream.engine.config import DataSpec\n"
        "assert 'shapesnet' in registered_models()\n"
        "assert len(build_dataset(DataSpec('shapes'))) == 512\n"
    )
    assert "attrstream.engine.demo.shapes" in modules
    assert "attrstream.engine.demo.train" not in modules  # registering builds nothing


@pytest.mark.parametrize("entry", [
    "from attrstream.engine.store import open_run",
    "from attrstream.engine.render import render_report",
    "from attrstream.engine.store.info import describe_store",
])
def test_reading_a_store_imports_no_creation_code_and_no_torch(entry: str) -> None:
    modules = loaded_modules(entry)
    for creator in ("prepare", "writer", "finalize"):
        assert f"attrstream.engine.store.{creator}" not in modules, (entry, creator)
    assert "torch" not in modules
    assert "attrstream.engine.store.meta" in modules


def test_the_command_line_parser_needs_no_torch() -> None:
    modules = loaded_modules("from attrstream.engine.cli import build_parser\nbuild_parser()")
    assert "torch" not in modules and "attrstream.engine.config" in modules
