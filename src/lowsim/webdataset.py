"""WebDataset shards of a generated dataset (`lowsim generate --format webdataset`), for streaming large sets.

OUT/webdataset/<split>-<i:06d>.tar, each a plain tar of up to `shard_size` samples in key order; a sample is
`<key>.dark.png`, `<key>.clean.png` (packed raw: `.npy`) and `<key>.json` (its manifest row: every parameter,
the source, the geometry). The shards are made from the finished dataset, whose PNG files stay the source of
truth (resume, regenerate); they are byte-identical for identical datasets (fixed tar metadata), and each is
written atomically. Readable by the `webdataset` package (`wds.WebDataset(urls).decode()`) or `tarfile`.
"""
from __future__ import annotations

import io
import json
import math
import tarfile
from pathlib import Path
from typing import Any, Mapping, Sequence

from lowsim.manifest import dataset_dir, read_manifest
from lowsim.safe_io import atomic_path, resolve_inside

SHARDS_DIR = "webdataset"
DEFAULT_SHARD_SIZE = 1000


def _json_row(row: Mapping[str, Any]) -> bytes:
    """A manifest row as JSON (NaN and missing cells as null), keys sorted."""
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
    return json.dumps(clean, sort_keys=True, default=str).encode()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644  # fixed metadata: identical datasets, identical shards
    tar.addfile(info, io.BytesIO(data))


def write_shard(path: Path, rows: Sequence[Mapping[str, Any]], root: Path) -> Path:
    """One tar of these rows' samples, atomically."""
    with atomic_path(path, what=" the shard") as tmp, tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
        for row in rows:
            key = str(row["key"])
            for kind in ("dark", "clean"):
                name = str(row[f"{kind}_file_name"])
                source = resolve_inside(root, name, f"{kind}_file_name of row {key}")
                _add(tar, f"{key}.{kind}{Path(name).suffix}", source.read_bytes())
            _add(tar, f"{key}.json", _json_row(row))
    return path


def write_shards(manifest: str | Path, shard_size: int = DEFAULT_SHARD_SIZE) -> list[Path]:
    """Shards of every split's ok rows into <dataset>/webdataset/; stale shards of an earlier run removed."""
    if shard_size <= 0:
        raise ValueError(f"shard_size must be positive, got {shard_size}")
    frame, meta = read_manifest(manifest)
    root = dataset_dir(manifest, meta)
    ok = frame[frame["status"] == "ok"].sort_values("key")
    folder = root / SHARDS_DIR
    written: list[Path] = []
    for split, rows in ok.groupby("split", sort=True):
        records = rows.to_dict("records")
        for start in range(0, len(records), shard_size):
            path = folder / f"{split}-{start // shard_size:06d}.tar"
            written.append(write_shard(path, records[start:start + shard_size], root))
    for stale in sorted(set(folder.glob("*.tar")) - set(written)):
        stale.unlink()
    return written
