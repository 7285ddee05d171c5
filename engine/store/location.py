"""Where a store lives: a local directory, or a URL opened through zarr's fsspec store.

The target is parsed once (:func:`locate`); every store entry point then goes through the same
methods, so local and remote stores share one code path. A local path or ``file://`` URL keeps the
lock files, the ``*.partial`` cleanup and zarr's atomic renames. Other schemes (``s3://``,
``memory://`` ...) offer no create-if-absent file that fsspec exposes for every filesystem, so the
lock degrades to a no-op that warns once per store; object stores put each object whole, so a unit
is still written whole or recomputed, and there are no temp files to clean.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import zarr
from zarr.storage import FsspecStore

from attrstream.engine.errors import StoreError, is_disk_full
from attrstream.engine.store.lock import WriterLock, live_locks

PARTIAL_SUFFIX = ".partial"  # zarr's LocalStore writes <key>.<uuid>.partial, then renames
_warned_unlocked: set[str] = set()  # URLs whose missing lock was already reported in this process


@dataclass(frozen=True)
class LocalLocation:
    """A store directory on a local or shared filesystem."""

    path: Path

    def __str__(self) -> str:
        return str(self.path)

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    def store(self, *, read_only: bool = False) -> Path:
        """What ``zarr.open_group`` takes: the path itself (zarr's LocalStore, atomic renames)."""
        return self.path

    def read(self, key: str) -> bytes | None:
        """The bytes of ``key`` under the root, None when absent (OSError when unreadable)."""
        file = self.path / key
        return file.read_bytes() if file.is_file() else None

    def kind(self) -> str:
        """``"missing"``, ``"file"`` or ``"dir"``."""
        return "dir" if self.path.is_dir() else "file" if self.path.exists() else "missing"

    def children(self, prefix: str = "") -> list[str]:
        """Names of the entries directly under ``prefix`` (the root by default)."""
        return sorted(p.name for p in (self.path / prefix).iterdir())

    def object_sizes(self, prefix: str) -> dict[str, int]:
        """Size in bytes of every object at or under ``prefix``, keyed relative to the root (a listing, no reads)."""
        top = self.path / prefix
        if top.is_file():
            return {prefix: top.stat().st_size}
        out = {}
        for folder, _, files in os.walk(top):
            for name in files:
                file = Path(folder, name)
                out[file.relative_to(self.path).as_posix()] = file.stat().st_size
        return out

    def delete(self, key: str) -> None:
        """Remove the object ``key`` under the root, if present."""
        (self.path / key).unlink(missing_ok=True)

    def write(self, key: str, parts: Sequence[bytes]) -> None:
        """Store the concatenated ``parts`` as object ``key``, atomically: a temp file named as
        zarr's LocalStore names its own (so :meth:`clean_partials` finds it), then a rename."""
        path = self.path / key
        tmp = path.with_suffix(f".{uuid.uuid4().hex}{PARTIAL_SUFFIX}")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with tmp.open("wb") as f:
                f.writelines(parts)
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def make_dir(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / f".write-probe{PARTIAL_SUFFIX}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as err:
            if is_disk_full(err):
                raise
            raise StoreError(f"Expected a writable store path, got {self.path}: {err.strerror or err}.") from None

    def lock(self, name: str, *, break_lock: bool = False) -> WriterLock:
        return WriterLock(self.path, name, break_lock=break_lock)

    def other_writers(self, lock: WriterLock) -> list[str]:
        """Names of live lock files other than ``lock``."""
        return [p.name for p in live_locks(self.path) if p != lock.path]

    def clean_partials(self) -> int:
        """Delete temp files a killed writer left behind; returns how many."""
        leftovers = list(self.path.rglob(f"*{PARTIAL_SUFFIX}"))
        for path in leftovers:
            path.unlink(missing_ok=True)
        return len(leftovers)

    def clear(self, keep: WriterLock) -> None:
        """Remove everything under the root but the held lock file."""
        for child in self.path.iterdir():
            if child == keep.path:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()


class NoLock:
    """Stands in for :class:`WriterLock` where the filesystem has none; warns once per store."""

    path = None

    def __init__(self, url: str) -> None:
        self.url = url
        self.held = False

    def acquire(self) -> None:
        if self.url not in _warned_unlocked:
            _warned_unlocked.add(self.url)
            scheme = self.url.split("://", 1)[0]
            warnings.warn(
                f"{self.url}: no writer lock on {scheme}:// stores: run only one writer per rank; "
                "leftover partial objects are not cleaned.",
                stacklevel=2,
            )
        self.held = True

    def release(self) -> None:
        self.held = False


@dataclass(frozen=True)
class UrlLocation:
    """A store addressed by an fsspec URL (``s3://bucket/run.zarr``, ``memory://run.zarr``)."""

    url: str
    storage_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            fs, root = fsspec.core.url_to_fs(self.url, **self.storage_options)
        except (ImportError, ValueError) as err:
            raise StoreError(
                f"Expected a store URL whose filesystem is installed (s3:// needs s3fs, gs:// gcsfs), "
                f"got {self.url!r}: {err}"
            ) from None
        object.__setattr__(self, "url", self.url.rstrip("/"))
        object.__setattr__(self, "_fs", fs)
        object.__setattr__(self, "_root", root.rstrip("/"))

    def __str__(self) -> str:
        return self.url

    @property
    def name(self) -> str:
        return self._root.rsplit("/", 1)[-1]

    def store(self, *, read_only: bool = False) -> FsspecStore:
        return FsspecStore.from_url(self.url, storage_options=dict(self.storage_options) or None, read_only=read_only)

    def read(self, key: str) -> bytes | None:
        try:
            return self._fs.cat_file(f"{self._root}/{key}")
        except FileNotFoundError:
            return None

    def kind(self) -> str:
        return "file" if self._fs.isfile(self._root) else "dir" if self._fs.isdir(self._root) else "missing"

    def children(self, prefix: str = "") -> list[str]:
        top = f"{self._root}/{prefix}".rstrip("/")
        return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in self._fs.ls(top, detail=False))

    def object_sizes(self, prefix: str) -> dict[str, int]:
        top = f"{self._root}/{prefix}"
        found = self._fs.find(top, detail=True)
        return {name[len(self._root) + 1:]: info["size"] if info else self._fs.size(name) for name, info in found.items()}

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._fs.rm_file(f"{self._root}/{key}")

    def write(self, key: str, parts: Sequence[bytes]) -> None:
        """Store the concatenated ``parts`` as object ``key`` (one put: atomic on object stores)."""
        self._fs.pipe_file(f"{self._root}/{key}", b"".join(parts))

    def make_dir(self) -> None:
        probe = f"{self._root}/.write-probe"
        try:
            self._fs.pipe_file(probe, b"")
            self._fs.rm_file(probe)
        except OSError as err:
            raise StoreError(f"Expected a writable store URL, got {self.url}: {err.strerror or err}.") from None

    def lock(self, name: str, *, break_lock: bool = False) -> NoLock:
        return NoLock(self.url)

    def other_writers(self, lock: NoLock) -> list[str]:
        return []

    def clean_partials(self) -> int:
        return 0

    def clear(self, keep: NoLock) -> None:
        if self.kind() != "dir":  # an object store has no empty directories to list
            return
        for child in self._fs.ls(self._root, detail=False):
            self._fs.rm(child, recursive=True)


StoreLocation = LocalLocation | UrlLocation


def locate(target: str | os.PathLike | StoreLocation) -> StoreLocation:
    """Parse a store target once: a path or ``file://`` URL is local, any other ``scheme://`` is fsspec."""
    if isinstance(target, LocalLocation | UrlLocation):
        return target
    text = os.fspath(target)
    if isinstance(target, str) and "://" in text:
        if text.startswith("file://"):
            return LocalLocation(Path(fsspec.core.url_to_fs(text)[1]))
        return UrlLocation(text)
    return LocalLocation(Path(text))


def open_group(location: StoreLocation, mode: str, **kwargs: Any) -> zarr.Group:
    """``zarr.open_group`` on the location's store (Zarr v3)."""
    return zarr.open_group(location.store(read_only=mode == "r"), mode=mode, zarr_format=3, **kwargs)
