"""Fixtures of the store fault tests (tests/store/_faults.py)."""

from tests.store._faults import store_copy, swept_store  # noqa: F401
