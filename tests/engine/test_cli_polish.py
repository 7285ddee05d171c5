"""What a new user reads from the CLI: the progress bar's end, the rerun line, the mismatch message, --help."""

from __future__ import annotations

import argparse

import pytest

from attrstream.engine.cli import build_parser
from tests.engine.test_cli_errors import TINY, assert_one_line_error, attrstream

SWEEP = [a for a in TINY if a != "--no-progress"] + ["--limit", "24", "--unit", "8", "--batch-size", "8"]


def test_sweep_bar_ends_complete_and_a_rerun_says_nothing_new(tmp_path):
    out = str(tmp_path / "run.zarr")
    first = attrstream("sweep", *SWEEP, "--out", out)
    assert first.returncode == 0, first.stderr
    last_bar = first.stderr.replace("\r", "\n").strip().splitlines()
    assert any("24/24" in line and "units=3/3" in line for line in last_bar[-3:]), first.stderr[-500:]
    assert "24 new examples" in first.stdout
    again = attrstream("sweep", *SWEEP, "--out", out)
    assert again.returncode == 0, again.stderr
    assert "0 new examples" in again.stdout
    changed = attrstream("sweep", *SWEEP, "--out", out, "--methods", "grad_x_input")
    assert_one_line_error(changed, "methods:", '-> ["grad_x_input"]')
    assert "layers" not in changed.stderr  # a consequence of dropping the layer methods, not a change of its own


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_help_describes_every_option_and_shows_its_default(command):
    sub = _subcommands()[command]
    text = sub.format_help()
    for action in sub._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"{command} {action.option_strings or action.dest} has no help"
        if action.option_strings and action.nargs != 0 and action.default is not None:
            shown = ",".join(map(str, action.default)) if isinstance(action.default, tuple) else str(action.default)
            assert f"(default: {shown})" in " ".join(text.split()), (command, action.dest)
