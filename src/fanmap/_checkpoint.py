"""Resumable maps: a SQLite file records finished results, so that a rerun skips them.

```
engine takes items p .. p+n ──► Store.split: a stored block starting at p whose items
                                 hash the same? ──► its results, without the pool
                                 otherwise ──► chunks to compute (never across the
                                 start of the next stored block)
engine finishes a block ──► Store.record(start, items, values): one row per run of
                             successful results; committed at most _COMMIT_EVERY apart
```

Only the caller writes (workers never touch the file), in WAL mode, so a reader never
sees half a write and a killed caller loses at most the last commit interval. A row
holds a block of consecutive items: where it starts, how many, a hash of their pickled
arguments (and the map's keywords), and their pickled results. Failed items are never
recorded. The file names the function it belongs to; another function's file, or a
file that is not a checkpoint, is refused and never overwritten.
"""

from __future__ import annotations

import bisect
import datetime
import hashlib
import os
import pickle
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Final

from ._errors import FanmapError
from ._mainmod import dumps

__all__ = ["Checkpoint", "CheckpointError", "Store"]

_FORMAT: Final = "fanmap-checkpoint-1"
_COMMIT_EVERY: Final = 0.5  # seconds


class CheckpointError(FanmapError):
    """A checkpoint file cannot be used for this map: another function's, or not a checkpoint.

    Examples:
        >>> issubclass(CheckpointError, FanmapError)
        True
    """


def _digest(items: Sequence[Any], keywords: bytes) -> bytes:
    # The same items hash the same however they came (a list, a range, a generator).
    block = items if type(items) is list else list(items)
    try:
        blob = pickle.dumps(block, pickle.HIGHEST_PROTOCOL)
    except Exception:
        blob = dumps(block)
    return hashlib.blake2b(blob + keywords, digest_size=16).digest()


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=2.0)


def _use_wal(conn: sqlite3.Connection) -> None:
    """WAL mode (a reader never sees half a write), set only on a checkpoint's own file."""
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA journal_mode=WAL")


def _read_meta(conn: sqlite3.Connection, path: Path) -> dict[str, str]:
    try:
        rows = conn.execute("SELECT key, value FROM meta").fetchall()
    except sqlite3.DatabaseError as exc:
        raise CheckpointError(
            f"{path} is not a fanmap checkpoint ({exc}); it was left as it is: "
            f"give the map another path, or remove this file if it is yours to remove"
        ) from None
    meta = dict(rows)
    if meta.get("format") != _FORMAT:
        raise CheckpointError(
            f"{path} is not a fanmap checkpoint (no fanmap format mark); it was left as it is: "
            f"give the map another path"
        )
    return meta


class Store:
    """The checkpoint of one run: what is recorded, and what it records as it goes."""

    #: Seconds between commits at most: the engine wakes up this often while results wait.
    commit_every: ClassVar[float] = _COMMIT_EVERY

    def __init__(self, path: str | os.PathLike[str], function: str, keywords: dict[str, Any]) -> None:
        self.path = Path(path)
        self.function = function
        try:
            blob = pickle.dumps(sorted(keywords.items()), pickle.HIGHEST_PROTOCOL)
        except Exception:
            blob = dumps(sorted(keywords.items()))
        self._keywords = hashlib.blake2b(blob, digest_size=16).digest()
        existed = self.path.exists() and self.path.stat().st_size > 0
        try:
            self._conn = _connect(self.path)
        except sqlite3.DatabaseError as exc:
            raise CheckpointError(
                f"{self.path} is not a fanmap checkpoint ({exc}); it was left as it is"
            ) from None
        try:
            if existed:
                meta = _read_meta(self._conn, self.path)
                if meta.get("function") != function:
                    raise CheckpointError(
                        f"{self.path} records the results of {meta.get('function')}, not of {function}; "
                        f"give this map a checkpoint file of its own"
                    )
                _use_wal(self._conn)
            else:
                _use_wal(self._conn)
                self._create()
            rows = self._conn.execute("SELECT start, count, digest FROM blocks ORDER BY start").fetchall()
        except sqlite3.OperationalError as exc:  # another map makes or writes it right now
            self._conn.close()
            raise CheckpointError(
                f"{self.path} is being written by another map ({exc}); a checkpoint file "
                f"belongs to one map at a time"
            ) from None
        except BaseException:
            self._conn.close()
            raise
        self._blocks: dict[int, tuple[int, bytes]] = {start: (count, digest) for start, count, digest in rows}
        self._starts = sorted(self._blocks)
        self.reused = 0
        self._dirty = False
        self._last_commit = time.monotonic()
        try:  # the write lock, for the whole run: one map writes a checkpoint at a time
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            self._conn.close()
            raise CheckpointError(
                f"{self.path} is being written by another map ({exc}); a checkpoint file "
                f"belongs to one map at a time"
            ) from None

    def _create(self) -> None:
        now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        self._conn.execute("BEGIN IMMEDIATE")
        self._conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._conn.execute(
            "CREATE TABLE blocks (start INTEGER PRIMARY KEY, count INTEGER NOT NULL, "
            "digest BLOB NOT NULL, results BLOB NOT NULL, at REAL NOT NULL)"
        )
        self._conn.executemany(
            "INSERT INTO meta VALUES (?, ?)",
            [("format", _FORMAT), ("function", self.function), ("created", now)],
        )
        self._conn.execute("COMMIT")

    # -- reading ---------------------------------------------------------------------

    def next_block(self, position: int) -> tuple[int, int] | None:
        """The stored block that starts at ``position`` (its size), or where the next starts.

        Returns:
            ``(count, 0)`` when a block starts at ``position``; ``(0, gap)`` when the next
            stored block starts ``gap`` items later; None when none follows.
        """
        if position in self._blocks:
            return self._blocks[position][0], 0
        at = bisect.bisect_right(self._starts, position)
        return (0, self._starts[at] - position) if at < len(self._starts) else None

    def stored(self, position: int, items: Sequence[Any]) -> list[Any] | None:
        """The recorded results of the block at ``position`` if ``items`` are its items."""
        count, digest = self._blocks[position]
        try:
            if len(items) != count or _digest(items, self._keywords) != digest:
                return None
        except Exception:  # arguments that cannot be pickled: computed again
            return None
        row = self._conn.execute("SELECT results FROM blocks WHERE start = ?", (position,)).fetchone()
        if row is None:
            return None
        values: list[Any] = pickle.loads(row[0])
        self.reused += len(values)
        return values

    # -- writing ---------------------------------------------------------------------

    def record(self, start: int, items: Sequence[Any], values: list[Any]) -> None:
        """Record a run of successful results.

        Raises:
            Exception: The results cannot be pickled (the caller names the item).
        """
        try:  # by reference first: a rerun rebuilds the results with its own classes
            blob = pickle.dumps(values, pickle.HIGHEST_PROTOCOL)
        except Exception:
            blob = dumps(values)
        try:
            digest = _digest(items, self._keywords)
        except Exception:
            return  # arguments that cannot be pickled cannot be recognised: not recorded
        end = start + len(values)
        self._conn.execute(  # what this block replaces, wherever the old blocks began
            "DELETE FROM blocks WHERE start < ? AND start + count > ?", (end, start)
        )
        self._conn.execute(
            "INSERT OR REPLACE INTO blocks VALUES (?, ?, ?, ?, ?)",
            (start, len(values), digest, blob, time.time()),
        )
        self._dirty = True
        if time.monotonic() - self._last_commit >= _COMMIT_EVERY:
            self.commit()

    @property
    def dirty(self) -> bool:
        """Whether results are recorded and not committed yet."""
        return self._dirty

    def commit_due(self) -> None:
        """Commit if the last commit is at least the commit interval old."""
        if self._dirty and time.monotonic() - self._last_commit >= _COMMIT_EVERY:
            self.commit()

    def commit(self) -> None:
        if self._dirty:
            self._conn.execute(
                "INSERT OR REPLACE INTO meta VALUES ('updated', ?)",
                (datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),),
            )
            self._conn.execute("COMMIT")
            self._conn.execute("BEGIN IMMEDIATE")
            self._dirty = False
        self._last_commit = time.monotonic()

    def close(self) -> None:
        """Commit what is recorded and let go of the file."""
        try:
            self.commit()
            self._conn.execute("COMMIT")
        finally:
            self._conn.close()


class Checkpoint:
    """A checkpoint file, to look at or remove: which function, how many items are done.

    Args:
        path: The file given to a map as ``checkpoint=``.

    Raises:
        CheckpointError: The file exists but is not a fanmap checkpoint.

    Examples:
        >>> import tempfile, pathlib
        >>> from fanmap import Checkpoint, parallel
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "squares.sqlite"
        >>> square = parallel(lambda x: x * x, backend="serial")
        >>> square.options(checkpoint=path).map(range(5))
        [0, 1, 4, 9, 16]
        >>> Checkpoint(path).done
        5
        >>> Checkpoint(path).remove()
        >>> path.exists()
        False
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._meta: dict[str, str] = {}
        self._done = 0
        if self.path.exists():
            conn = sqlite3.connect(self.path)
            try:
                self._meta = _read_meta(conn, self.path)
                self._done = int(conn.execute("SELECT COALESCE(SUM(count), 0) FROM blocks").fetchone()[0])
            finally:
                conn.close()

    @property
    def exists(self) -> bool:
        """Whether the file is there."""
        return self.path.exists()

    @property
    def function(self) -> str | None:
        """The qualified name of the function whose results the file records."""
        return self._meta.get("function")

    @property
    def done(self) -> int:
        """How many items have a recorded result."""
        return self._done

    @property
    def created(self) -> str | None:
        """When the file was made (ISO 8601, UTC)."""
        return self._meta.get("created")

    @property
    def updated(self) -> str | None:
        """When results were last committed (ISO 8601, UTC)."""
        return self._meta.get("updated", self._meta.get("created"))

    def remove(self) -> None:
        """Delete the file (and SQLite's companions): the next map starts from scratch."""
        for suffix in ("", "-wal", "-shm"):
            Path(str(self.path) + suffix).unlink(missing_ok=True)

    def __repr__(self) -> str:
        return f"Checkpoint({str(self.path)!r}, function={self.function!r}, done={self.done})"
