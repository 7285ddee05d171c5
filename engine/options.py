"""Configuration dataclasses as the single source of the command line's options.

A field declared with :func:`option` carries its help text (and, where needed, how to parse a
command-line string); :func:`add_options` turns such fields into argparse options with the field's
own default, and :func:`from_args` builds the dataclass back from the parsed namespace. Defaults
and help therefore live once, on the dataclass, and validation stays in its ``__post_init__``.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import Any

_MISSING = dataclasses.MISSING


def option(default: Any = _MISSING, help: str = "", *, parse: Callable[[str], Any] | None = None,
           flag: str | None = None, metavar: str | None = None, required: bool = False) -> Any:
    """A dataclass field that is also a command-line option ``--<name>`` (or ``flag``).

    A bool field with default False becomes a switch; with default True, ``flag`` names the
    switch that turns it off (``--no-progress``).
    """
    meta = {"help": help, "parse": parse, "flag": flag, "metavar": metavar, "required": required}
    if default is _MISSING:
        return dataclasses.field(metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def cli_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of ``cls`` declared with :func:`option`, in declaration order."""
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


def _dest(f: dataclasses.Field) -> str:
    """The namespace attribute of a field: its flag's name (``--model`` → ``model``), else the field's."""
    flag = f.metadata["flag"]
    return flag[2:].replace("-", "_") if flag and not isinstance(f.default, bool) else f.name


def add_options(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one option per :func:`option` field of ``cls`` to ``parser``."""
    for f in cli_fields(cls):
        meta = f.metadata
        flag = meta["flag"] or f"--{f.name.replace('_', '-')}"
        default = None if f.default is _MISSING else f.default
        if isinstance(default, bool):
            action = "store_false" if default else "store_true"
            parser.add_argument(flag, dest=f.name, action=action, help=meta["help"])
            continue
        kwargs: dict[str, Any] = {"dest": _dest(f), "help": meta["help"], "default": default}
        if meta["parse"] is not None:
            kwargs["type"] = meta["parse"]
        elif isinstance(default, int):
            kwargs["type"] = int
        if meta["metavar"]:
            kwargs["metavar"] = meta["metavar"]
        if meta["required"]:
            kwargs["required"] = True
        parser.add_argument(flag, **kwargs)


def from_args(cls: type, args: argparse.Namespace, **extra: Any) -> Any:
    """``cls`` built from the parsed options of its :func:`option` fields, plus ``extra`` fields."""
    return cls(**{f.name: getattr(args, _dest(f)) for f in cli_fields(cls)}, **extra)


def csv(value: str) -> tuple[str, ...]:
    """``"a, b,c"`` → ``("a", "b", "c")``: the parse of comma-separated options."""
    return tuple(v.strip() for v in value.split(",") if v.strip())


def assignments(value: str) -> dict[str, str]:
    """``"a=x, b=y"`` → ``{"a": "x", "b": "y"}``: the parse of per-name options (``--layer-layout``)."""
    pairs = [item.partition("=") for item in csv(value)]
    bad = [k for k, eq, v in pairs if not (k.strip() and eq and v.strip())]
    if bad:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE[,NAME=VALUE...], got {value!r}")
    return {k.strip(): v.strip() for k, _, v in pairs}


def int_pair(value: str) -> tuple[int, int]:
    """``"14x14"`` (or ``"14"``) → ``(14, 14)``."""
    h, _, w = value.lower().partition("x")
    try:
        return int(h), int(w or h)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW (e.g. 14x14), got {value!r}") from None


def int_list(value: str) -> tuple[int, ...]:
    """``"0:64"`` → ``(0, ..., 63)``, ``"3,5,7"`` → ``(3, 5, 7)``: the parse of index options (``--channels``)."""
    try:
        if ":" in value:
            start, _, stop = value.partition(":")
            return tuple(range(int(start), int(stop)))
        return tuple(int(v) for v in csv(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected START:STOP or I,J,K (e.g. 0:64 or 3,5,7), got {value!r}") from None


def floats(value: str) -> tuple[float, ...]:
    """``"0.5"`` → ``(0.5,)``, ``"0.485,0.456,0.406"`` → three floats."""
    try:
        return tuple(float(v) for v in csv(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {value!r}") from None
