"""One writer process per (store, lock name): a lock file naming pid, host and start time.

The file appears atomically with its content (written to a private temp file, then ``os.link``ed
to the lock name, which fails if it exists: the O_CREAT|O_EXCL guarantee without a window in
which a reader could see an empty lock). A lock whose pid is dead on this host is stale and is
taken over with a warning; a lock from another host cannot be checked and counts as live.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

from attrstream.engine.errors import StoreLockedError

LOCK_SUFFIX = ".lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_lock(path: Path) -> dict[str, Any] | None:
    """The holder recorded in a lock file, or None when it is unreadable (treated as stale)."""
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) else None


def holder_alive(holder: dict[str, Any] | None) -> bool:
    """Whether a lock holder may still be running (other hosts: assumed so)."""
    if holder is None:
        return False
    return holder.get("host") != socket.gethostname() or _pid_alive(holder["pid"])


def live_locks(root: Path) -> list[Path]:
    """Lock files under ``root`` whose holder may be running."""
    return [p for p in root.glob(f"*{LOCK_SUFFIX}") if holder_alive(read_lock(p))]


class WriterLock:
    """The lock file ``<root>/<name>.lock``, held from :meth:`acquire` to :meth:`release`."""

    def __init__(self, root: Path, name: str) -> None:
        self.path = root / f"{name}{LOCK_SUFFIX}"
        self.held = False

    def acquire(self) -> None:
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps(holder))
        try:
            for _ in range(2):
                try:
                    os.link(tmp, self.path)
                except FileExistsError:
                    self._take_over_if_stale()
                    continue
                self.held = True
                return
            raise StoreLockedError(f"Expected to take the writer lock {self.path}, but it keeps reappearing.")
        finally:
            tmp.unlink(missing_ok=True)

    def _take_over_if_stale(self) -> None:
        holder = read_lock(self.path)
        if holder_alive(holder):
            raise StoreLockedError(
                f"Store {self.path.parent} is being written by pid {holder['pid']} on host "
                f"{holder['host']} (since {holder.get('started')}); expected no other writer. "
                f"Wait for it to finish, or remove {self.path} if that process is gone."
            )
        warnings.warn(
            f"Taking over the stale writer lock {self.path} (holder {holder or 'unreadable'} is not running).",
            stacklevel=4,
        )
        self.path.unlink(missing_ok=True)

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False
