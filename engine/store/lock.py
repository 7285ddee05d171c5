"""One writer process per (store, lock name): a lock file naming pid, host and start time.

The file appears atomically with its content (written to a private temp file, then ``os.link``ed
to the lock name, which fails if it exists: the O_CREAT|O_EXCL guarantee without a window in
which a reader could see an empty lock). A lock whose pid is dead on this host is stale and is
taken over with a warning. A lock from another host cannot be checked and counts as live until
the user says otherwise (``break_lock``, the CLI's ``--break-lock``: a requeued job whose first
run was killed on another node).
"""

from __future__ import annotations

import calendar
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
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_held_here: set[Path] = set()  # lock files this process holds: never broken, even with break_lock


def is_lock_file(name: str) -> bool:
    """A lock file, or the temp file a killed process left while writing one."""
    return name.endswith(LOCK_SUFFIX) or (name.startswith(".") and f"{LOCK_SUFFIX}." in name and name.endswith(".tmp"))


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


def lock_age(started: object, now: float | None = None) -> str:
    """``"3h 12m"`` since a lock's ``started`` time, or ``"unknown"`` when it cannot be read."""
    try:
        seconds = int((time.time() if now is None else now) - calendar.timegm(time.strptime(str(started), _TIME_FORMAT)))
    except ValueError:
        return "unknown"
    days, rest = divmod(max(seconds, 0), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{days}d"] * bool(days) + [f"{hours}h"] * bool(hours) + [f"{minutes}m"] * bool(minutes)
    return " ".join(parts[:2]) or f"{seconds}s"


def describe_holder(holder: dict[str, Any]) -> str:
    """``pid 12 on host node7, started 2024-05-01T10:00:00Z (3h 12m ago)``."""
    started = holder.get("started")
    return f"pid {holder['pid']} on host {holder.get('host')}, started {started} ({lock_age(started)} ago)"


class WriterLock:
    """The lock file ``<root>/<name>.lock``, held from :meth:`acquire` to :meth:`release`.

    A job's lock is named by its group, which may be a path (``features/layer4``): the file stays at
    the root, where every writer looks for live locks (``features+layer4.lock``).

    ``break_lock`` takes over a lock held by another process (another host's, which cannot be
    checked, or a reused pid here), with a warning naming the holder; never one of this process.
    """

    def __init__(self, root: Path, name: str, *, break_lock: bool = False) -> None:
        self.path = root / f"{name.replace('/', '+')}{LOCK_SUFFIX}"
        self.break_lock = break_lock
        self.held = False

    def acquire(self) -> None:
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime(_TIME_FORMAT, time.gmtime())}
        tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")
        try:
            tmp.write_text(json.dumps(holder))  # inside the try: a full disk leaves no temp file behind
            for _ in range(2):
                try:
                    os.link(tmp, self.path)
                except FileExistsError:
                    self._take_over_if_stale()
                    continue
                self.held = True
                _held_here.add(self.path.absolute())
                return
            raise StoreLockedError(f"Expected to take the writer lock {self.path}, but it keeps reappearing.")
        finally:
            tmp.unlink(missing_ok=True)

    def _take_over_if_stale(self) -> None:
        holder = read_lock(self.path)
        if holder_alive(holder):
            assert holder is not None
            if self.path.absolute() in _held_here:
                raise StoreLockedError(
                    f"Store {self.path.parent} is already being written by this process (pid {os.getpid()}); "
                    "expected one writer per store: close the first writer before opening another."
                )
            if not self.break_lock:
                raise StoreLockedError(self._refusal(holder))
            warnings.warn(f"Breaking the writer lock {self.path} of {describe_holder(holder)}, as --break-lock asked.",
                          stacklevel=4)
        else:
            warnings.warn(
                f"Taking over the stale writer lock {self.path} (holder {holder or 'unreadable'} is not running).",
                stacklevel=4,
            )
        self.path.unlink(missing_ok=True)

    def _refusal(self, holder: dict[str, Any]) -> str:
        if holder.get("host") == socket.gethostname():
            return (f"Store {self.path.parent} is being written by {describe_holder(holder)}; expected no other "
                    f"writer. Wait for it to finish (if pid {holder['pid']} is no attrstream writer, rerun with "
                    "--break-lock).")
        return (f"Store {self.path.parent} is locked by {describe_holder(holder)}, which this host cannot check. "
                "If that job is gone (a requeued or killed job), rerun with --break-lock to take the lock over; "
                "otherwise wait for it to finish.")

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            _held_here.discard(self.path.absolute())
            self.held = False
