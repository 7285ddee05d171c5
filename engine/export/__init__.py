"""Exports of a finished store to other tools (TensorBoard); like the report, they read only the store."""

from attrstream.engine.export.tensorboard import export_tensorboard

__all__ = ["export_tensorboard"]
