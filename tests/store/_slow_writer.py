"""A real writer process for the lock and SIGKILL tests: writes the test run slowly.

Usage: python -m tests.store._slow_writer STORE SECONDS_PER_ARRAY [hold]
With ``hold`` it opens the store, prints "ready" and sleeps (a live lock holder).
"""

from __future__ import annotations

import sys
import time

import attrstream.engine.store.writer as writer_module
from attrstream.engine.store import open_writer
from tests.store._helpers import feed, small_spec

CRASH_SPEC = dict(n=22, unit=4)  # 6 units, the last one short


def main() -> None:
    path, delay = sys.argv[1], float(sys.argv[2])
    original = writer_module.write_shard

    def slow(*args):
        time.sleep(delay)
        original(*args)

    writer_module.write_shard = slow
    spec = small_spec(**CRASH_SPEC)
    with open_writer(path, spec) as writer:
        print("ready", flush=True)
        if sys.argv[3:] == ["hold"]:
            time.sleep(60)
        feed(writer, spec)


if __name__ == "__main__":
    main()
