"""Finding and reading real dark/bright image pairs in the three supported folder layouts.

- ``lol``: ``low/`` + ``high/`` (or ``normal/``), flat folders, matched by file stem. Pair.name = the stem.
- ``sid``: Learning-to-See-in-the-Dark: ``<Camera>/short/*`` + ``<Camera>/long/*`` (Camera = Sony or Fuji; the
  root may also be the camera folder itself), names ``<scene>_<shot>_<seconds>s.<ext>``. Every short exposure
  pairs with the long exposure of the same scene id (the longest if a scene has several); the ratio is
  long/short seconds capped at 300, as SID does. Optional list files ``<Camera>_<split>_list.txt`` (lines
  ``./Sony/short/a.ARW ./Sony/long/b.ARW ISO200 F8``) select pairs. Pair.name = the short file's stem
  (prefixed ``<camera>_`` when several camera folders are present, to stay unique).
- ``csv``: a CSV with ``dark`` and ``bright`` columns (paths relative to the CSV file), optional ``name`` and
  ``ratio`` columns. Pair.name = the name column, else the dark file's stem.

Unmatched files are an error naming them; ``strict=False`` skips them with a warning instead (never when no
pair at all matched). ``read_pair`` returns float32 RGB in [0, 1]; the SID dark image is the short exposure
decoded exactly like the long one, NOT multiplied by the ratio (the ratio stays in ``Pair.ratio``).
"""
from __future__ import annotations

import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lowsim.errors import LowsimError, printable
from lowsim.imageio import ALL_EXTENSIONS, RAW_EXTENSIONS, read_image

LAYOUTS = ("auto", "sid", "lol", "csv")
SID_RATIO_CAP = 300.0
SID_CAMERAS = ("Sony", "Fuji")
LOL_BRIGHT_DIRS = ("high", "normal")
_SID_NAME = re.compile(r"^(?P<scene>\d+)_(?P<shot>\d+)_(?P<seconds>\d+(?:\.\d+)?)s$")
_LIST_PREVIEW = 5


@dataclass(frozen=True)
class Pair:
    """One real dark/bright pair; ratio is the bright/dark exposure ratio when known (SID)."""

    name: str
    dark: Path
    bright: Path
    ratio: float | None = None

    def __post_init__(self) -> None:
        # A file name that is not UTF-8 is named by its escaped bytes: tables and reports store text.
        object.__setattr__(self, "name", printable(self.name))


# ---------------------------------------------------------------------------------------------- helpers

def _preview(names: Iterable[str]) -> str:
    """'a, b, c' listing at most a few names, with an ellipsis when there are more."""
    names = sorted(names)
    shown = ", ".join(names[:_LIST_PREVIEW])
    return shown + (", …" if len(names) > _LIST_PREVIEW else "")


def _image_files(folder: Path, extensions: Iterable[str] = ALL_EXTENSIONS) -> list[Path]:
    """Non-hidden files in a flat folder whose extension is supported, sorted by name."""
    allowed = set(extensions)
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in allowed)


def _by_stem(files: list[Path], folder: Path) -> dict[str, Path]:
    """Map stem -> file, refusing two files with the same stem (ambiguous match)."""
    mapping: dict[str, Path] = {}
    for path in files:
        if path.stem in mapping:
            raise LowsimError(f"two images share the name {path.stem!r} ({mapping[path.stem].name}, "
                              f"{path.name}); cannot tell which to pair", folder)
        mapping[path.stem] = path
    return mapping


def _report_unmatched(unmatched: dict[str, list[str]], matched: int, root: Path, strict: bool) -> None:
    """Raise (strict, or nothing matched) or warn about files that found no partner."""
    problems = [f"{len(names)} {side} {'image has' if len(names) == 1 else 'images have'} no "
                f"{partner} partner: {_preview(names)}"
                for side, partner in (("dark", "bright"), ("bright", "dark"))
                if (names := unmatched.get(side, []))]
    if not problems:
        return
    message = "; ".join(problems)
    if strict or matched == 0:
        hint = "" if matched == 0 else " (give each its partner, or move it out of the folder)"
        raise LowsimError(message + hint, root)
    warnings.warn(f"{root}: skipping unmatched files: {message}", stacklevel=3)


def _require_pairs(pairs: list[Pair], root: Path, layout: str) -> list[Pair]:
    """Pairs sorted by name; an error when none matched or names collide."""
    if not pairs:
        raise LowsimError(f"no pairs matched ({layout} layout)", root)
    pairs = sorted(pairs, key=lambda p: p.name)
    seen: set[str] = set()
    duplicates = sorted({p.name for p in pairs if p.name in seen or seen.add(p.name)})
    if duplicates:
        raise LowsimError(f"pair names are not unique: {_preview(duplicates)}", root)
    return pairs


# ---------------------------------------------------------------------------------------------- LOL

def _lol_bright_dir(root: Path) -> Path | None:
    """The bright folder of a LOL layout (high/ or normal/), if present."""
    return next((root / d for d in LOL_BRIGHT_DIRS if (root / d).is_dir()), None)


def find_lol_pairs(root: Path, strict: bool = True) -> list[Pair]:
    """Pairs from low/ and high/ (or normal/), matched by file stem."""
    low_dir, high_dir = root / "low", _lol_bright_dir(root)
    if not low_dir.is_dir() or high_dir is None:
        raise LowsimError("expected a LOL layout: folders low/ and high/ (or normal/)", root)
    dark, bright = _by_stem(_image_files(low_dir), low_dir), _by_stem(_image_files(high_dir), high_dir)
    if not dark:
        raise LowsimError("no images in low/", low_dir)
    if not bright:
        raise LowsimError("no images in the bright folder", high_dir)
    common = dark.keys() & bright.keys()
    _report_unmatched({"dark": [dark[s].name for s in dark.keys() - common],
                       "bright": [bright[s].name for s in bright.keys() - common]},
                      len(common), root, strict)
    return _require_pairs([Pair(s, dark[s], bright[s]) for s in common], root, "lol")


# ---------------------------------------------------------------------------------------------- SID

def parse_sid_name(path: str | Path) -> tuple[str, float]:
    """(scene id, exposure seconds) from a SID file name such as 00001_00_0.04s.ARW."""
    match = _SID_NAME.match(Path(path).stem)
    if match is None:
        raise LowsimError("not a SID file name, expected <scene>_<shot>_<seconds>s.<ext> "
                          "such as 00001_00_0.04s.ARW", path)
    seconds = float(match["seconds"])
    if seconds <= 0:
        raise LowsimError("exposure time in the name must be positive", path)
    return match["scene"], seconds


def sid_exposure_ratio(short: str | Path, long: str | Path, cap: float = SID_RATIO_CAP) -> float:
    """Long/short exposure ratio from two SID file names, capped at ``cap`` (300 in SID)."""
    _, short_seconds = parse_sid_name(short)
    _, long_seconds = parse_sid_name(long)
    return float(min(long_seconds / short_seconds, cap))


def _sid_camera_dirs(root: Path) -> list[tuple[str, Path]]:
    """(camera, folder) for each folder under root holding short/ and long/ (root itself counts)."""
    if (root / "short").is_dir() and (root / "long").is_dir():
        return [(root.name, root)]
    found = [(cam, root / cam) for cam in SID_CAMERAS
             if (root / cam / "short").is_dir() and (root / cam / "long").is_dir()]
    others = sorted(d for d in root.iterdir() if d.is_dir() and d.name not in SID_CAMERAS
                    and (d / "short").is_dir() and (d / "long").is_dir()) if root.is_dir() else []
    return found + [(d.name, d) for d in others]


def _sid_pairs_from_folders(camera_dir: Path, prefix: str, strict: bool) -> list[Pair]:
    """Pair every short exposure with the longest long exposure of the same scene."""
    shorts = _image_files(camera_dir / "short", RAW_EXTENSIONS)
    longs = _image_files(camera_dir / "long", RAW_EXTENSIONS)
    if not shorts:
        raise LowsimError(f"no raw files ({', '.join(sorted(RAW_EXTENSIONS))}) in short/",
                          camera_dir / "short")
    if not longs:
        raise LowsimError(f"no raw files ({', '.join(sorted(RAW_EXTENSIONS))}) in long/",
                          camera_dir / "long")
    long_by_scene: dict[str, tuple[float, Path]] = {}
    for path in longs:
        scene, seconds = parse_sid_name(path)
        if scene not in long_by_scene or seconds > long_by_scene[scene][0]:
            long_by_scene[scene] = (seconds, path)
    pairs, lonely_shorts, used_scenes = [], [], set()
    for path in shorts:
        scene, _ = parse_sid_name(path)
        if scene not in long_by_scene:
            lonely_shorts.append(path.name)
            continue
        used_scenes.add(scene)
        bright = long_by_scene[scene][1]
        pairs.append(Pair(prefix + path.stem, path, bright, sid_exposure_ratio(path, bright)))
    lonely_longs = [p.name for s, (_, p) in long_by_scene.items() if s not in used_scenes]
    _report_unmatched({"dark": lonely_shorts, "bright": lonely_longs}, len(pairs), camera_dir, strict)
    return pairs


def _resolve_list_files(root: Path, cameras: list[tuple[str, Path]], list_file: str | Path) -> list[Path]:
    """The list files to read: an explicit path, or <Camera>_<split>_list.txt for each camera."""
    explicit = Path(list_file)
    if explicit.suffix == ".txt" or explicit.is_file():
        path = explicit if explicit.is_absolute() or explicit.exists() else root / explicit
        if not path.is_file():
            raise LowsimError("SID list file not found", path)
        return [path]
    split = str(list_file)
    candidates = [root / f"{cam}_{split}_list.txt" for cam, _ in cameras]
    candidates += [d.parent / f"{cam}_{split}_list.txt" for cam, d in cameras if d == root]
    found = list(dict.fromkeys(p for p in candidates if p.is_file()))
    if not found:
        raise LowsimError(f"no SID list file for split {split!r} (expected "
                          f"{', '.join(p.name for p in candidates[:len(cameras)])})", root)
    return found


def _sid_pairs_from_list(list_path: Path, prefix: str) -> list[Pair]:
    """Pairs named by a SID list file; paths are relative to the list file's folder."""
    try:
        lines = list_path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise LowsimError(f"cannot read SID list file ({err})", list_path) from None
    pairs, missing = [], []
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2:
            raise LowsimError(f"line {number}: expected '<short path> <long path> ...', got {line!r}",
                              list_path)
        dark, bright = (list_path.parent / f for f in fields[:2])
        missing += [str(p) for p in (dark, bright) if not p.is_file()]
        pairs.append(Pair(prefix + dark.stem, dark, bright, sid_exposure_ratio(dark, bright)))
    if missing:
        raise LowsimError(f"{len(missing)} files named in the list are missing: {_preview(missing)}",
                          list_path)
    return pairs


def find_sid_pairs(root: Path, strict: bool = True, list_file: str | Path | None = None) -> list[Pair]:
    """SID pairs from <Camera>/short + <Camera>/long, optionally restricted to a list file."""
    cameras = _sid_camera_dirs(root)
    if not cameras:
        raise LowsimError("expected a SID layout: Sony/short and Sony/long (or Fuji/…, or short/ and "
                          "long/ directly)", root)
    pairs: list[Pair] = []
    if list_file is not None:
        for list_path in _resolve_list_files(root, cameras, list_file):
            camera = list_path.name.split("_", 1)[0]
            pairs += _sid_pairs_from_list(list_path, f"{camera.lower()}_" if len(cameras) > 1 else "")
    else:
        for camera, folder in cameras:
            pairs += _sid_pairs_from_folders(folder, f"{camera.lower()}_" if len(cameras) > 1 else "",
                                             strict)
    # Deduplicate identical pairs (SID's lists repeat nothing, but user lists might).
    return _require_pairs(list(dict.fromkeys(pairs)), root, "sid")


# ---------------------------------------------------------------------------------------------- CSV

def find_csv_pairs(csv_path: Path) -> list[Pair]:
    """Pairs from a CSV with dark, bright (relative to the CSV) and optional name, ratio columns."""
    import pandas as pd

    if not csv_path.is_file():
        raise LowsimError("pairs CSV not found", csv_path)
    try:
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise LowsimError(f"cannot parse pairs CSV ({type(err).__name__}: {err})", csv_path) from None
    table.columns = [str(c).strip().lower() for c in table.columns]
    twice = sorted({c for c in table.columns if list(table.columns).count(c) > 1})
    if twice:
        raise LowsimError(f"pairs CSV has the column {twice[0]!r} twice", csv_path)
    missing_columns = [c for c in ("dark", "bright") if c not in table.columns]
    if missing_columns:
        raise LowsimError(f"pairs CSV lacks column(s) {', '.join(missing_columns)}; expected columns "
                          f"dark, bright (optional name, ratio), got {', '.join(table.columns) or 'none'}",
                          csv_path)
    if table.empty:
        raise LowsimError("pairs CSV has no rows", csv_path)
    pairs, missing = [], []
    for row_number, row in enumerate(table.to_dict("records"), start=2):
        if not row["dark"].strip() or not row["bright"].strip():
            raise LowsimError(f"row {row_number}: empty dark or bright path", csv_path)
        dark, bright = (csv_path.parent / row[c].strip() for c in ("dark", "bright"))
        missing += [str(p) for p in (dark, bright) if not p.is_file()]
        name = str(row.get("name", "")).strip() or dark.stem
        pairs.append(Pair(name, dark, bright, _csv_ratio(row.get("ratio", ""), row_number, csv_path)))
    if missing:
        raise LowsimError(f"{len(missing)} files named in the CSV are missing: {_preview(missing)}",
                          csv_path)
    return _require_pairs(pairs, csv_path, "csv")


def _csv_ratio(value: str, row_number: int, csv_path: Path) -> float | None:
    """The optional ratio cell as a positive float, or None when empty."""
    if value is None or not str(value).strip():
        return None
    try:
        ratio = float(value)
    except ValueError:
        raise LowsimError(f"row {row_number}: ratio {value!r} is not a number", csv_path) from None
    if not np.isfinite(ratio) or ratio <= 0:
        raise LowsimError(f"row {row_number}: ratio must be positive, got {value!r}", csv_path)
    return ratio


# ---------------------------------------------------------------------------------------------- public

def detect_layout(root: str | Path) -> str:
    """'csv', 'lol' or 'sid' from what the path holds, or a LowsimError saying what was expected."""
    root = Path(root)
    if not root.exists():
        raise LowsimError("pairs folder not found", root)
    if root.is_file():
        if root.suffix.lower() == ".csv":
            return "csv"
        raise LowsimError("expected a pairs folder or a .csv file", root)
    if (root / "low").is_dir() and _lol_bright_dir(root) is not None:
        return "lol"
    if _sid_camera_dirs(root):
        return "sid"
    csvs = sorted(root.glob("*.csv"))
    if len(csvs) == 1:
        return "csv"
    if not any(root.iterdir()):
        raise LowsimError("pairs folder is empty", root)
    raise LowsimError("cannot tell the pairs layout: expected low/ + high/ (LOL), Sony/short + Sony/long "
                      "(SID), or one CSV with dark,bright columns", root)


def find_pairs(root: str | Path, layout: str = "auto", strict: bool = True,
               list_file: str | Path | None = None) -> list[Pair]:
    """All dark/bright pairs under root (a folder, or a CSV file), sorted by name."""
    root = Path(root)
    if layout not in LAYOUTS:
        raise LowsimError(f"unknown pairs layout {layout!r}, expected one of {', '.join(LAYOUTS)}")
    if not root.exists():
        raise LowsimError("pairs folder not found", root)
    if root.is_dir() and not any(root.iterdir()):
        raise LowsimError("pairs folder is empty", root)
    chosen = detect_layout(root) if layout == "auto" else layout
    if list_file is not None and chosen != "sid":
        raise LowsimError(f"list_file applies to the SID layout only, this is {chosen}", root)
    if chosen == "lol":
        return find_lol_pairs(root, strict=strict)
    if chosen == "sid":
        return find_sid_pairs(root, strict=strict, list_file=list_file)
    csv_path = root if root.is_file() else _single_csv(root)
    return find_csv_pairs(csv_path)


def _single_csv(folder: Path) -> Path:
    """The one CSV in a folder, or an error."""
    csvs = sorted(folder.glob("*.csv"))
    if len(csvs) != 1:
        raise LowsimError(f"expected exactly one .csv file, found {len(csvs)}", folder)
    return csvs[0]


def read_pair(pair: Pair) -> tuple[np.ndarray, np.ndarray]:
    """(dark, bright) as float32 (H, W, 3) in [0, 1]; the SID dark image is NOT multiplied by the ratio."""
    from lowsim.degrade import to_float

    dark, bright = read_image(pair.dark), read_image(pair.bright)
    if dark.shape != bright.shape:
        raise LowsimError(f"pair {pair.name!r}: dark image is {dark.shape[1]}x{dark.shape[0]} but bright "
                          f"image {pair.bright} is {bright.shape[1]}x{bright.shape[0]}; a pair must match",
                          pair.dark)
    return to_float(dark), to_float(bright)
