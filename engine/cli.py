"""The ``attrstream`` command line: a thin shell that builds configs and calls the Python API."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from attrstream.engine import __version__
from attrstream.engine.errors import AttrstreamError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="attrstream",
        description="One-pass attribution and activation-statistics extraction, streamed to Zarr v3.",
    )
    parser.add_argument("--version", action="version", version=f"attrstream {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except AttrstreamError as err:
        print(f"attrstream {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"attrstream {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
