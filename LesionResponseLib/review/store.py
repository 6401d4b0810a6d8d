"""Crash-safe files of a review: atomic writes, the session lock, the append-only audit log.

Every file is written to a temporary sibling, flushed and ``fsync``-ed, then moved over the target with
``os.replace`` (atomic on POSIX and Windows), so a crash leaves either the old or the new file, never half.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from pathlib import Path
from typing import Any

from LesionResponseLib.errors import LesionResponseError, describe


class ReviewError(LesionResponseError):
    """A review edit or session that cannot proceed (unknown id, conflicting edit, locked session)."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder + fsync + ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def json_bytes(data: Any) -> bytes:
    """Deterministic JSON encoding (sorted keys off: field order is meaningful; 2-space indent, UTF-8)."""
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line to ``path`` and fsync (the audit log is never rewritten)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_json(path: Path) -> Any:
    """Parsed JSON of ``path``; a :class:`ReviewError` naming the file when it is unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReviewError(describe(f"cannot read ({exc})", path=path,
                                   fix="Restore it from a backup or delete the review/ folder to start over")) from exc


LOCK_FILE = "review/session.lock"  # in an analysis folder: who writes it now (one writer at a time)
#: Set by a process holding a folder's lock for a child it starts to write that folder under the same lock (a re-run
#: of ``analyze`` from the review app): the holder's process id. The child shares the lock only when the lock file
#: names that process on this host and it is the child's parent (:meth:`SessionLock.acquire`).
LOCK_HANDOVER_ENV = "LESION_RESPONSE_LOCK_HOLDER"


class SessionLock:
    """An exclusive lock file (``O_CREAT | O_EXCL``) holding the owner's user name and process id."""

    def __init__(self, path: Path, user: str) -> None:
        self.path = path
        self.user = user
        self.held = False  # this object made the lock file (and removes it on release)
        self.shared = False  # the lock is the parent process's, handed over to this one (release leaves it)

    def acquire(self) -> None:
        """Take the lock or raise :class:`ReviewError` naming who holds it. A child started with
        :meth:`handover_environment` by the holder shares the holder's lock instead (the holder writes nothing
        while the child runs)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._handed_over():
            self.shared = True
            return
        if self._stale():
            self.path.unlink(missing_ok=True)
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            owner = self.path.read_text(encoding="utf-8", errors="replace").strip() or "unknown"
            raise ReviewError(describe(
                f"the review session is being edited by another process ({owner})", path=self.path,
                fix="Wait until it finishes, or delete this lock file if that process no longer runs")) from None
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(f"user={self.user} pid={os.getpid()} host={socket.gethostname()}\n")
        self.held = True

    def handover_environment(self) -> dict[str, str]:
        """Environment variables that let a child process of this one write the folder under this held lock."""
        if not self.held:
            raise ReviewError(describe("this process does not hold the review session's lock", path=self.path,
                                       fix="Open the review session before starting a re-run from it"))
        return {LOCK_HANDOVER_ENV: str(os.getpid())}

    def _fields(self) -> dict[str, str]:
        return dict(f.split("=", 1) for f in self.path.read_text(encoding="utf-8").split() if "=" in f)

    def _handed_over(self) -> bool:
        """True when this process's parent holds the lock and handed it over (:data:`LOCK_HANDOVER_ENV`)."""
        holder = os.environ.get(LOCK_HANDOVER_ENV, "")
        try:
            fields = self._fields()
        except OSError:
            return False
        return (bool(holder) and holder == fields.get("pid") == str(os.getppid())
                and fields.get("host") == socket.gethostname())

    def _stale(self) -> bool:
        """True when the lock was taken on this host by a process that no longer runs (a crash)."""
        try:
            fields = self._fields()
            if fields.get("host") != socket.gethostname():
                return False
            os.kill(int(fields["pid"]), 0)
        except ProcessLookupError:
            return True
        except (OSError, KeyError, ValueError):
            return False
        return False

    def holder(self) -> str | None:
        """The user holding the lock (``user=`` of the lock file; ``unknown`` if unreadable), or None when it is
        free or was left by a process that no longer runs on this host."""
        if not self.path.exists() or self._stale():
            return None
        try:
            fields = self._fields()
        except OSError:
            return None  # released between the check and the read
        return fields.get("user") or "unknown"

    def release(self) -> None:
        """Remove the lock file if this object holds it."""
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


def session_lock(out_dir: str | Path, user: str) -> SessionLock:
    """The (not yet taken) lock of the analysis folder ``out_dir``: its review session, or a re-run of ``analyze``
    over a reviewed folder, writes it under this lock."""
    return SessionLock(Path(out_dir) / LOCK_FILE, user)
