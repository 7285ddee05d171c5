"""``python -m attrstream.engine`` (and ``torchrun -m attrstream.engine``) runs the CLI."""

from attrstream.engine.cli import main

raise SystemExit(main())
