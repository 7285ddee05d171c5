"""The report rendered from real stores on disk: files, links, data dependence, partial runs, no model."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from matplotlib.image import imread

from attrstream.engine.errors import ConfigError, StoreError
from attrstream.engine.render import render_report
from attrstream.engine.render.reading import done_examples
from attrstream.engine.store import open_run

from .conftest import make_spec, write_store

EXAMPLES = 4  # drawn per example figure: enough for a grid, few enough to keep the folder fast

# Every figure of a store with labels, two methods and two layers with stats and maps.
EXPECTED = {
    "inputs.png",
    "outputs_classes.png",
    "outputs_confidence.png",
    "outputs_confusion.png",
    "outputs_examples.png",
    "gradients_input.png",
    "gradients_layers.png",
    "activations_layer1.png",
    "activations_block.2.png",
    "features_layer1.png",
    "features_block.2.png",
}


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.links += [unquote(v) for k, v in attrs if k in ("src", "href") and v and not v.startswith("#")]


def links(index: Path) -> list[str]:
    parser = _Links()
    parser.feed(index.read_text(encoding="utf-8"))
    return parser.links


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.glob("*.png")}


@pytest.fixture(scope="module")
def report(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render_report(store, tmp_path_factory.mktemp("report"), examples=EXAMPLES)


@pytest.fixture(scope="module")
def other_report(other_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render_report(open_run(other_store), tmp_path_factory.mktemp("report"), examples=EXAMPLES)


def test_every_figure_exists_and_is_not_blank(report: Path) -> None:
    pngs = {p.name for p in report.parent.glob("*.png")}
    assert pngs == EXPECTED
    for name in pngs:
        pixels = imread(report.parent / name)[..., :3]
        assert pixels.std() > 0.02, name  # a blank or single-colour canvas has ~0
        h, w = pixels.shape[:2]
        assert 200 <= w <= 1600 and 150 <= h <= 2000, (name, w, h)  # readable, not poster-sized
    assert not list(report.parent.glob(".*.tmp"))  # no half-written leftovers


def test_index_links_every_figure_and_every_link_resolves(report: Path) -> None:
    linked = links(report)
    assert set(linked) == EXPECTED
    for name in linked:
        assert (report.parent / name).is_file(), name
    page = report.read_text(encoding="utf-8")
    for fact in ("toy-cnn", "blobs", "grad_x_input", "saliency", "block.2 (12 ch, maps 4×4)", "3/3 units done",
                 "finalized", "zarr"):
        assert fact in page, fact


def test_every_figure_changes_with_the_data(report: Path, other_report: Path) -> None:
    ours, theirs = digests(report.parent), digests(other_report.parent)
    assert ours.keys() == theirs.keys() == EXPECTED
    same = [name for name in EXPECTED if ours[name] == theirs[name]]
    assert not same


def test_renders_without_torch_and_deterministically(store: Path, report: Path, tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["torch"] = None  # `import torch` now raises ImportError
        sys.modules["torchvision"] = None
        from attrstream.engine.render import render_report
        render_report(sys.argv[1], sys.argv[2], examples=int(sys.argv[3]), layers=["layer1"], methods=["saliency"])
        assert "torch" not in {m.split(".")[0] for m, mod in sys.modules.items() if mod is not None}
        """
    )
    subprocess.run([sys.executable, "-c", script, str(store), str(tmp_path), str(EXAMPLES)], check=True, timeout=120)
    names = {p.name for p in tmp_path.glob("*.png")}
    assert "activations_block.2.png" not in names and "activations_layer1.png" in names
    assert set(links(tmp_path / "index.html")) == names
    ours, again = digests(report.parent), digests(tmp_path)
    for name in ("inputs.png", "outputs_classes.png", "outputs_examples.png", "activations_layer1.png"):
        assert ours[name] == again[name], name  # same data, same pixels: the data test above can fail


def test_partial_store_renders_what_is_done(tmp_path: Path) -> None:
    path = write_store(tmp_path / "run.zarr", seed=2, units=[0, 2], finalize=False)
    run = open_run(path)
    done = done_examples(run)
    np.testing.assert_array_equal(done, np.r_[0:16, 32:40])  # unit 1 never written
    index = render_report(run, tmp_path / "report", examples=4, layers=["block.2"], methods=["grad_x_input"])
    page = index.read_text(encoding="utf-8")
    assert "2/3 units done" in page and "not finalized" in page
    assert set(links(index)) == {name for name in EXPECTED if "layer1" not in name}


def test_options_select_and_validate(store: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"layers among layer1, block\.2, got 'layer9'"):
        render_report(store, tmp_path, layers=["layer9"])
    with pytest.raises(ConfigError, match="Close matches: saliency"):
        render_report(store, tmp_path, methods=["salency"])
    with pytest.raises(ConfigError, match="examples >= 1"):
        render_report(store, tmp_path, examples=0)
    with pytest.raises(ConfigError, match="not available: \\[99\\]"):
        render_report(store, tmp_path, examples=[1, 99])
    with pytest.raises(ConfigError, match="outlier_perc"):
        render_report(store, tmp_path, outlier_perc=-1)
    with pytest.raises(StoreError):
        render_report(tmp_path / "missing.zarr", tmp_path)
    assert not list(tmp_path.glob("*.png"))  # options are checked before anything is drawn


def test_store_without_finished_units_is_refused(tmp_path: Path) -> None:
    path = write_store(tmp_path / "run.zarr", seed=0, spec=make_spec(n=8, unit=4), units=[], finalize=False)
    with pytest.raises(StoreError, match="at least one finished unit"):
        render_report(path, tmp_path / "report")
