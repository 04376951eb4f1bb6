"""The resume state in OUT/.lowsim-journal: run signature, lock, and a Parquet part of finished rows per chunk.

Both backends journal through `Journal.record` (the local driver per chunk, a Ray task per shard), and a
resume trusts only journaled rows whose files are intact (`row_is_intact`).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from lowsim.errors import LowsimError, UnsafePathError, WriteError
from lowsim.generate.plan import CLEAN_DIR, DARK_DIR, JOURNAL_DIR, KEY_DIGITS, METADATA_FILE
from lowsim.manifest import RUN_KEY
from lowsim.params import file_sha256
from lowsim.safe_io import atomic_write_bytes, atomic_write_text, resolve_inside

RUN_FILE = "run.json"
LOCK_FILE = "lock"
ABSENT_KEYS = "__absent_keys__"  # journal parts: per row, the columns it does not have


class Journal:
    """Resume state in OUT/.lowsim-journal: the run signature, finished rows per chunk, a lock."""

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.dir = self.out / JOURNAL_DIR
        self._lock_fh: Any = None
        self.notes: list[str] = []  # one-line notes for the user (e.g. a run record rebuilt)

    def open(self, signature: Mapping[str, Any]) -> None:
        """Take the lock, then create or check the run signature, and remove orphan temp files."""
        self._check_folder()
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise WriteError(f"cannot create the output folder ({err.strerror or err})", self.out) from None
        self._lock()  # before reading the signature: two fresh runs must not both write one
        run_file = self.dir / RUN_FILE
        if run_file.is_file():
            stored = self._stored_signature(run_file, signature)
            differ = [k for k in signature if stored.get(k) != json.loads(json.dumps(signature[k]))]
            if differ:
                detail = "; ".join(f"{k}: was {stored.get(k)!r}, now {signature[k]!r}" for k in differ)
                raise LowsimError(f"holds a run with different settings ({detail}); resume with the same "
                                  "settings or choose another --out", self.out)
        elif self._has_parts():
            self._adopt_signature(signature, "was missing")
        else:
            atomic_write_text(run_file, json.dumps(signature, indent=2) + "\n")
        for folder in (*image_folders(self.out), self.dir, self.out):
            if folder.is_dir():
                for tmp in folder.glob(".*.tmp"):
                    with contextlib.suppress(OSError):
                        tmp.unlink()

    def _check_folder(self) -> None:
        """--out is a folder (or absent), and either empty, or holding a lowsim run."""
        if self.out.exists() and not self.out.is_dir():
            raise LowsimError("--out must be a folder, found a file", self.out)
        if self.dir.is_dir() or not self.out.exists():
            return
        if any(p.name != JOURNAL_DIR for p in self.out.iterdir()):
            raise LowsimError("output folder is not empty and holds no lowsim run; choose an empty or "
                              "new folder", self.out)

    def _has_parts(self) -> bool:
        return any(self.dir.glob("part-*.parquet"))

    def _stored_signature(self, run_file: Path, signature: Mapping[str, Any]) -> dict[str, Any]:
        """The recorded signature; a damaged run.json is rebuilt from the run's other records."""
        try:
            stored = json.loads(run_file.read_text())
        except (OSError, ValueError) as err:
            return self._adopt_signature(signature, f"was damaged ({type(err).__name__})")
        if not isinstance(stored, dict):
            return self._adopt_signature(signature, "was damaged (not a JSON object)")
        return stored

    def _adopt_signature(self, signature: Mapping[str, Any], why: str) -> dict[str, Any]:
        """Rewrite run.json as this command's signature, if metadata.parquet and the journal agree with it."""
        evidence = recorded_signature(self.out)
        conflicts = _signature_conflicts(signature, evidence) if evidence is not None \
            else _row_conflicts(signature, self.load().values())
        if conflicts:
            raise LowsimError(f"the run record {RUN_FILE} {why}, and this folder's samples were made with other "
                              f"settings ({conflicts}); resume with those settings or choose another --out",
                              self.out)
        atomic_write_text(self.dir / RUN_FILE, json.dumps(signature, indent=2) + "\n")
        self.notes.append(f"{self.dir / RUN_FILE} {why}: rebuilt from the dataset's manifest and journal")
        return json.loads(json.dumps(signature))

    def _lock(self) -> None:
        """An exclusive lock on the folder for this process (released by the OS even on kill -9)."""
        import fcntl

        try:
            # Not written through safe_io: the lock must stay the same file while it is held. It holds
            # the pid of the holder, for the message of the one that waits.
            self._lock_fh = open(self.dir / LOCK_FILE, "a+")  # noqa: SIM115 - held for the run
            fcntl.flock(self._lock_fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(self.dir / LOCK_FILE)
            self._lock_fh.close()
            self._lock_fh = None
            raise LowsimError(f"another generate is writing here ({holder}); wait for it to finish or "
                              "choose another --out", self.out) from None
        except OSError as err:
            raise WriteError(f"cannot lock the output folder ({err.strerror or err})", self.out) from None
        with contextlib.suppress(OSError):
            self._lock_fh.truncate(0)
            self._lock_fh.write(f"{os.getpid()}\n")
            self._lock_fh.flush()

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


def _lock_holder(lock_file: Path) -> str:
    """'pid N' from a held lock file, or 'pid unknown'. The holder writes its pid just after taking the lock, so
    an empty file is read again for a moment before giving up."""
    import time

    pid = ""
    for _ in range(10):
        try:
            pid = lock_file.read_text().strip()
        except OSError:
            pid = ""
        if pid.isdigit():
            return f"pid {pid}"
        time.sleep(0.05)
    return "pid unknown"


def recorded_signature(out: Path) -> dict[str, Any] | None:
    """The run signature stored in OUT/metadata.parquet by the last finished run, or None."""
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(out / METADATA_FILE).metadata or {}
        stored = json.loads(meta[RUN_KEY.encode()])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return stored if isinstance(stored, dict) else None


def _signature_conflicts(signature: Mapping[str, Any], stored: Mapping[str, Any]) -> str:
    """'key: was X, now Y; ...' for the signature entries that differ (empty when none)."""
    now = json.loads(json.dumps(signature))
    return "; ".join(f"{k}: was {stored.get(k)!r}, now {now[k]!r}" for k in now if stored.get(k) != now[k])


def _row_conflicts(signature: Mapping[str, Any], rows: Iterable[Mapping[str, Any]]) -> str:
    """The signature entries that journaled rows record (seed, params, bit depth, model, size) and contradict."""
    checks = {"seed": "seed", "params_sha256": "params_sha256", "bit_depth": "bit_depth", "model": "model"}
    found: dict[str, Any] = {}
    for row in rows:
        for key, column in checks.items():
            if column in row and row[column] != signature.get(key):
                found.setdefault(key, row[column])
        size = signature.get("size")
        if size is not None and row.get("status") == "ok" and row.get("height") != size:
            found.setdefault("size", row.get("height"))
    return "; ".join(f"{k}: was {v!r}, now {signature.get(k)!r}" for k, v in found.items())


def _digest(indices: Sequence[int]) -> str:
    """Short hash of a chunk's indices, so differently chunked runs never overwrite each other's parts."""
    return hashlib.sha256(",".join(map(str, indices)).encode()).hexdigest()[:10]


def row_is_intact(row: Mapping[str, Any], out: Path) -> bool:
    """An ok row is trusted only when both its files exist with the recorded size and sha256."""
    if row.get("status") != "ok":
        return True
    for kind in (CLEAN_DIR, DARK_DIR):
        try:
            path = resolve_inside(out, str(row.get(f"{kind}_file_name")), f"{kind}_file_name")
            if path.stat().st_size != row.get(f"{kind}_bytes") or file_sha256(path) != row.get(f"{kind}_sha256"):
                return False
        except (OSError, UnsafePathError):  # a journal row pointing outside OUT is not ours to trust
            return False
    return True


def accept_rows(rows: Sequence[dict[str, Any]], done: dict[int, dict[str, Any]],
                advance: Callable[[int], None]) -> None:
    """Add a finished (already journaled) chunk's rows to `done` and count its ok samples."""
    for row in rows:
        done[int(row["index"])] = row
    advance(sum(1 for r in rows if r["status"] == "ok"))
