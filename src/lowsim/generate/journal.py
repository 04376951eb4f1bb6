"""The resume state in OUT/.lowsim-journal: run signature, lock, and a Parquet part of finished rows per chunk.

Both backends journal through `Journal.record` (the local driver per chunk, a Ray task per shard), and a
resume trusts only journaled rows whose files are intact (`row_is_intact`).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from lowsim.errors import LowsimError
from lowsim.generate.plan import CLEAN_DIR, DARK_DIR, JOURNAL_DIR, KEY_DIGITS
from lowsim.params import file_sha256
from lowsim.safe_io import atomic_write_bytes, atomic_write_text

RUN_FILE = "run.json"
LOCK_FILE = "lock"
ABSENT_KEYS = "__absent_keys__"  # journal parts: per row, the columns it does not have


class Journal:
    """Resume state in OUT/.lowsim-journal: the run signature, finished rows per chunk, a lock."""

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.dir = self.out / JOURNAL_DIR
        self._lock_fh: Any = None

    def open(self, signature: Mapping[str, Any]) -> None:
        """Create or check the signature, take the lock, and remove orphan temp files."""
        run_file = self.dir / RUN_FILE
        if run_file.is_file():
            try:
                stored = json.loads(run_file.read_text())
            except (OSError, json.JSONDecodeError) as err:
                raise LowsimError(f"damaged run signature ({err}); delete the folder to start over",
                                  run_file) from None
            differ = [k for k in signature if stored.get(k) != json.loads(json.dumps(signature[k]))]
            if differ:
                detail = "; ".join(f"{k}: was {stored.get(k)!r}, now {signature[k]!r}" for k in differ)
                raise LowsimError(f"holds a run with different settings ({detail}); resume with the same "
                                  "settings or choose another --out", self.out)
        else:
            if self.out.exists() and not self.out.is_dir():
                raise LowsimError("--out must be a folder, found a file", self.out)
            if self.out.exists() and any(p.name != JOURNAL_DIR for p in self.out.iterdir()):
                raise LowsimError("output folder is not empty and holds no lowsim run; choose an empty or "
                                  "new folder", self.out)
            try:
                self.dir.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise LowsimError(f"cannot create the output folder ({err.strerror or err})", self.out) from None
            atomic_write_text(run_file, json.dumps(signature, indent=2) + "\n")
        self._lock()
        for folder in (*image_folders(self.out), self.dir, self.out):
            if folder.is_dir():
                for tmp in folder.glob(".*.tmp"):
                    with contextlib.suppress(OSError):
                        tmp.unlink()

    def _lock(self) -> None:
        """An exclusive lock on the folder for this process (released by the OS even on kill -9)."""
        import fcntl

        try:
            self._lock_fh = open(self.dir / LOCK_FILE, "a")  # noqa: SIM115 - held for the run
            fcntl.flock(self._lock_fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LowsimError("another lowsim generate is writing to this folder", self.out) from None
        except OSError as err:
            raise LowsimError(f"cannot lock the output folder ({err.strerror or err})", self.out) from None

    def close(self) -> None:
        if self._lock_fh is not None:
            self._lock_fh.close()
            self._lock_fh = None

    def record(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Journal one finished chunk (or shard) of rows as a Parquet part, atomically: whole or absent."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        indices = sorted(int(r["index"]) for r in rows)
        name = f"part-{indices[0]:0{KEY_DIGITS + 1}d}-{len(indices)}-{_digest(indices)}.parquet"
        # columns are the union of the rows' keys; ABSENT_KEYS lists the keys a row lacks (an error row has
        # fewer), so it reads back with exactly its own keys; pyarrow keeps ints, floats, strings, None exactly
        columns = list(dict.fromkeys(k for r in rows for k in r))
        table = {k: [r.get(k) for r in rows] for k in columns}
        table[ABSENT_KEYS] = [[k for k in columns if k not in r] for r in rows]
        buffer = pa.BufferOutputStream()
        pq.write_table(pa.table(table), buffer)
        atomic_write_bytes(self.dir / name, buffer.getvalue().to_pybytes())

    def load(self) -> dict[int, dict[str, Any]]:
        """Every journaled row by index (parts that do not read are ignored: they were never finished)."""
        import pyarrow.parquet as pq

        rows: dict[int, dict[str, Any]] = {}
        for part in sorted(self.dir.glob("part-*.parquet")):
            try:
                for row in pq.read_table(part).to_pylist():
                    absent = set(row.pop(ABSENT_KEYS) or ())
                    rows.setdefault(int(row["index"]), {k: v for k, v in row.items() if k not in absent})
            except (OSError, ValueError, TypeError, KeyError):
                continue
        return rows


def image_folders(out: Path) -> list[Path]:
    """The folders a run writes images into: OUT/<split>/clean and dark (and OUT/clean, dark of runs made
    before the per-split layout)."""
    return [folder for kind in (CLEAN_DIR, DARK_DIR) for folder in (out / kind, *sorted(out.glob(f"*/{kind}")))
            if folder.is_dir()]


def _digest(indices: Sequence[int]) -> str:
    """Short hash of a chunk's indices, so differently chunked runs never overwrite each other's parts."""
    return hashlib.sha256(",".join(map(str, indices)).encode()).hexdigest()[:10]


def row_is_intact(row: Mapping[str, Any], out: Path) -> bool:
    """An ok row is trusted only when both its files exist with the recorded size and sha256."""
    if row.get("status") != "ok":
        return True
    for kind in (CLEAN_DIR, DARK_DIR):
        path = out / str(row.get(f"{kind}_file_name"))
        try:
            if path.stat().st_size != row.get(f"{kind}_bytes") or file_sha256(path) != row.get(f"{kind}_sha256"):
                return False
        except OSError:
            return False
    return True


def accept_rows(rows: Sequence[dict[str, Any]], done: dict[int, dict[str, Any]],
                advance: Callable[[int], None]) -> None:
    """Add a finished (already journaled) chunk's rows to `done` and count its ok samples."""
    for row in rows:
        done[int(row["index"])] = row
    advance(sum(1 for r in rows if r["status"] == "ok"))
