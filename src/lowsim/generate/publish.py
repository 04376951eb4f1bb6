"""What a finished run leaves for its readers: the manifest (every row), OUT/metadata.parquet (the ok rows),
one OUT/<split>/metadata.parquet per split (file names relative to it, so that
`datasets.load_dataset("imagefolder", data_dir=OUT)` yields one split per folder), the dataset card
OUT/README.md, and a warning for each split left empty. The Parquet footers carry the full params file and the
command (`lowsim.params`, `lowsim.command`)."""
from __future__ import annotations

import contextlib
import shlex
import warnings
from pathlib import Path
from typing import Any, Sequence

from lowsim.dataset_card import render_card
from lowsim.generate.plan import METADATA_FILE, RunSpec
from lowsim.manifest import (COMMAND_KEY, PARAMS_KEY, PARAMS_PATH_KEY, RUN_KEY, SRC_ROOT_KEY, manifest_schema,
                             write_manifest)
from lowsim.safe_io import atomic_write_text

CARD_FILE = "README.md"


class EmptySplitWarning(UserWarning):
    """A split with a non-zero fraction got no sample (too few source photos for the fractions)."""


def command_line(spec: RunSpec, n: int) -> str:
    """The `lowsim generate` command that makes this dataset (options that cannot change it left out). --out is
    the folder's name: the dataset's bytes must not depend on where it is written (the same run in two places
    is byte-identical)."""
    # a recipe other than calibrated uses its own shipped file, and refuses --params and --sampler
    own = spec.recipe not in (None, "calibrated")
    source = ["--recipe", str(spec.recipe)] if own else ["--params", spec.params_path]
    args = ["lowsim", "generate", "--src", spec.src_root, "--n", str(n), *source,
            "--out", Path(spec.out).name, "--seed", str(spec.seed), "--bit-depth", str(spec.bit_depth),
            "--split-fractions", ",".join(f"{k}={v:g}" for k, v in spec.fractions),
            *([] if own else ["--sampler", spec.param_sampler])]
    if spec.size is not None:
        args += ["--size", str(spec.size)]
    return shlex.join(args)


def publish(spec: RunSpec, dist: Any, rows: Sequence[dict[str, Any]], n: int, out: Path, manifest: Path) -> Path:
    """Write the manifest, the metadata files and the card; warn about empty splits. Returns OUT/metadata.parquet."""
    ok_rows = [r for r in rows if r["status"] == "ok"]
    command = command_line(spec, n)
    extra = {SRC_ROOT_KEY: spec.src_root, PARAMS_PATH_KEY: spec.params_path, RUN_KEY: spec.signature(),
             PARAMS_KEY: Path(spec.params_path).read_text(encoding="utf-8"), COMMAND_KEY: command}
    metadata = write_manifest(ok_rows, out / METADATA_FILE, out, extra)
    counts = {split: _write_split(out, split, ok_rows, extra) for split, _ in spec.fractions}
    write_manifest(rows, manifest, out, extra)
    card = render_card(title=f"lowsim dataset {out.name}", split_counts=counts, schema=manifest_schema(),
                       rows=ok_rows, dist=dist, command=command, src_root=spec.src_root,
                       n_sources=len(spec.sources), bit_depth=spec.bit_depth)
    atomic_write_text(out / CARD_FILE, card)
    _warn_empty(spec, counts, len(ok_rows))
    return metadata


def _write_split(out: Path, split: str, ok_rows: Sequence[dict[str, Any]], extra: dict[str, Any]) -> int:
    """OUT/<split>/metadata.parquet with file names relative to OUT/<split> (none, and a stale one removed, for
    an empty split). Rows of a run made before the per-split layout have no such folder and are left out."""
    prefix = f"{split}/"
    rows = [{**r, **{k: r[k][len(prefix):] for k in r if k.endswith("_file_name") and r[k]}} for r in ok_rows
            if r.get("split") == split and str(r.get("dark_file_name", "")).startswith(prefix)]
    path = out / split / METADATA_FILE
    if rows:
        write_manifest(rows, path, out / split, extra)
    else:
        with contextlib.suppress(OSError):
            path.unlink()
    return len(rows)


def _warn_empty(spec: RunSpec, counts: dict[str, int], n_ok: int) -> None:
    for split, fraction in spec.fractions:
        if fraction > 0 and counts[split] == 0:
            warnings.warn(EmptySplitWarning(
                f"split {split!r} is empty: its share is {fraction:g} of {len(spec.sources)} source photo(s) "
                f"({n_ok} samples; splits go by source photo); add source photos or change --split-fractions"),
                stacklevel=4)  # the caller of generate()
