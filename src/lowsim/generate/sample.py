"""One sample: render it, make it (read, draw, degrade, write, its manifest row), or rebuild it from its row."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from lowsim import __version__
from lowsim.degradation.registry import get_model
from lowsim.errors import LowsimError, is_printable, printable
from lowsim.generate.plan import (CLEAN_DIR, DARK_DIR, MIN_SOURCE_SIDE, Geometry, RunSpec, apply_geometry, draw_geometry,
                                  sample_key, sample_streams, source_index, to_bit_depth)
from lowsim.imageio import read_image, write_png
from lowsim.manifest import SRC_ROOT_KEY, dataset_dir, read_manifest
from lowsim.safe_io import resolve_inside
from lowsim.params import DegradationParams, IspParams, ParamDistribution, file_sha256, params_from_mapping
from lowsim.raw.synthesize import write_packed
from lowsim.splits import assign_split


def render_sample(source: np.ndarray, geometry: Geometry, params: DegradationParams | IspParams,
                  noise_rng: np.random.Generator, bit_depth: int,
                  sampler: str | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """(clean, dark, sampler used) for one sample: geometry, then the degradation at the output depth."""
    return render_recorded(source, geometry, params, noise_rng, bit_depth, sampler)[:3]


def render_recorded(source: np.ndarray, geometry: Geometry, params: Any, noise_rng: np.random.Generator,
                    bit_depth: int, sampler: str | None = None) -> tuple[np.ndarray, np.ndarray, str, dict[str, Any]]:
    """render_sample plus what a library-applying model (the generic recipe) drew and must record."""
    clean = apply_geometry(source, geometry)
    model = get_model(params.model)
    sampler = sampler or model.choose_sampler(clean.dtype, params, bit_depth)
    if model.degrade_recorded is not None:
        dark, record = model.degrade_recorded(clean, params, noise_rng, bit_depth, sampler=sampler)
    else:
        dark, record = model.degrade_to_codes(clean, params, noise_rng, bit_depth, sampler=sampler), {}
    return to_bit_depth(clean, bit_depth), dark, sampler, record


@dataclass(frozen=True)
class Synthesized:
    """One sample made from source pixels: its clean and dark images (at the output depth) and what was drawn."""

    clean: np.ndarray
    dark: np.ndarray
    geometry: Geometry
    params: Any  # DegradationParams | IspParams | RawParams | a recipe's draw
    sampler: str
    record: dict[str, Any]  # what a library-applying model drew (manifest columns); empty for the others
    metered_light: float | None = None  # the source's meter reading, when the draw's exposure followed it


def synthesize(source: np.ndarray, dist: Any, streams: Mapping[str, np.random.Generator], size: int | None,
               bit_depth: int = 8) -> Synthesized:
    """Draw a crop and a parameter set and degrade: everything `lowsim generate` does to one sample between reading
    its source and writing its PNGs (make_sample calls this). `streams`: sample_streams(seed, i) for generate's
    sample i, or streams_of(any SeedSequence); `size`: generate's --size (None: the whole source)."""
    geometry = draw_geometry(streams["geometry"], source.shape[0], source.shape[1], size)
    if isinstance(dist, ParamDistribution):  # the whole source is metered, the frame the camera exposed for
        params, metered = dist.sample_for_photo(streams["params"], source)
    else:  # the raw model's and the recipes' distributions: no meter
        params, metered = dist.sample(streams["params"]), None
    clean, dark, sampler, record = render_recorded(source, geometry, params, streams["noise"], bit_depth)
    return Synthesized(clean, dark, geometry, params, sampler, record, metered)


def check_record(row: dict[str, Any], record: dict[str, Any], key: str) -> None:
    """LowsimError unless a rebuilt sample drew what its row recorded (same library version, same values)."""
    version = record.get("recipe_library_version")
    if version is not None and row.get("recipe_library_version") != version:
        raise LowsimError(f"sample {key} was made with albumentations {row.get('recipe_library_version')}, this is "
                          f"{version}; install albumentations=={row.get('recipe_library_version')} to rebuild it")
    differ = [k for k, v in record.items() if row.get(k) != v]
    if differ:
        raise LowsimError(f"sample {key}: the rebuilt draw differs from the recorded one in {', '.join(differ)}")


def _source_error_row(spec: RunSpec, index: int, source: str, message: str) -> dict[str, Any]:
    """The row recording an unreadable source."""
    return {"key": sample_key(index), "index": index, "status": "error", "error_message": message,
            "source_path": source, "split": assign_split(source, dict(spec.fractions)),
            "seed": spec.seed, "params_sha256": spec.params_sha256, "bit_depth": spec.bit_depth,
            "model": spec.model, "lowsim_version": __version__, "numpy_version": np.__version__}


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def _source_sha256(path: Path) -> str:
    """sha256 of a source file, cached per process by (path, size, mtime)."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = file_sha256(path)
    return _SHA_CACHE[key]


def _read_source(spec: RunSpec, index: int, source: str) -> tuple[np.ndarray, str] | dict[str, Any]:
    """(pixels, sha256) of a sample's source, or the error row saying why it cannot be used."""
    if not is_printable(source):  # the manifest stores names as UTF-8 text
        return _source_error_row(spec, index, printable(source),
                                 f"{printable(Path(spec.src_root) / source)}: file name is not valid UTF-8; "
                                 "rename the file")
    path = Path(spec.src_root) / source
    try:
        image = read_image(path)
        source_sha = _source_sha256(path)
    except LowsimError as err:
        return _source_error_row(spec, index, source, str(err))
    except OSError as err:  # vanished or unreadable between listing and reading
        return _source_error_row(spec, index, source, f"{path}: cannot read ({err.strerror or err})")
    height, width = image.shape[:2]
    if min(height, width) < MIN_SOURCE_SIDE:
        return _source_error_row(spec, index, source, f"{path}: image is {width}x{height} px, smaller than "
                                 f"the minimum of {MIN_SOURCE_SIDE} px a side (it would only give flat crops)")
    return image, source_sha


def make_sample(spec: RunSpec, dist: Any, index: int) -> dict[str, Any]:
    """Make sample `index`: read its source, draw, degrade, write both PNGs; return its manifest row.

    An unusable source (unreadable, too small, a non-UTF-8 name) gives an error row; a failure to write
    raises (the run cannot go on).
    """
    source = spec.sources[source_index(spec.seed, index, len(spec.sources))]
    read = _read_source(spec, index, source)
    if isinstance(read, dict):
        return read
    image, source_sha = read
    source_height, source_width = image.shape[:2]
    made = synthesize(image, dist, sample_streams(spec.seed, index), spec.size, spec.bit_depth)
    del image
    clean, dark, sampler, record, geometry, params = (made.clean, made.dark, made.sampler, made.record,
                                                      made.geometry, made.params)
    key = sample_key(index)
    row = _source_error_row(spec, index, source, "")
    row.update(status="ok", error_message=None, source_sha256=source_sha, source_height=source_height,
               source_width=source_width, sampler=sampler)
    for kind, img in ((CLEAN_DIR, clean), (DARK_DIR, dark)):
        suffix = ".npy" if img.ndim == 3 and img.shape[2] == 4 else ".png"  # packed raw (model lowsim.raw/v1)
        name = f"{row['split']}/{kind}/{key}{suffix}"  # one folder per split: each loads as its own split
        target = Path(spec.out) / name
        if suffix == ".npy":
            write_packed(target, img)
        else:
            write_png(target, img)
        row[f"{kind}_file_name"] = name
        row[f"{kind}_bytes"] = target.stat().st_size
        row[f"{kind}_sha256"] = file_sha256(target)
    row.update(geometry.fields())
    row.update(params.to_dict())
    row.update(record)
    if made.metered_light is not None:
        row["metered_light"] = made.metered_light
    if spec.recipe is not None:
        row["recipe"] = spec.recipe
    return row


def _manifest_row(manifest: Path, key: str) -> tuple[dict[str, Any], dict[str, str]]:
    """(the ok row of sample `key` with nulls as None, the manifest's metadata), or LowsimError."""
    frame, meta = read_manifest(manifest)
    match = frame[frame["key"] == key]
    if match.empty:
        example = f" (keys look like {frame['key'].iloc[0]!r})" if len(frame) else " (it has no rows)"
        raise LowsimError(f"no sample with key {key!r}{example}", manifest)
    row = {k: (None if _is_missing(v) else v) for k, v in match.iloc[0].to_dict().items()}
    if row["status"] != "ok":
        raise LowsimError(f"sample {key} was not generated: {row['error_message']}", manifest)
    folder = dataset_dir(manifest, meta)
    for kind in (CLEAN_DIR, DARK_DIR):  # a row naming files outside its dataset is not one we made
        resolve_inside(folder, str(row.get(f"{kind}_file_name")), f"{kind}_file_name of sample {key}")
    return row, meta


def regenerate(manifest: Path, key: str, src: Path | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Rebuild one sample bit-exactly from its manifest row: (clean, dark, row).

    The source is read from the recorded --src folder (or `src`), checked against its sha256; geometry and
    parameters come from the row, the noise from the sample's own stream. Paths in the row must stay inside
    their folders (lowsim.safe_io.resolve_inside).
    """
    row, meta = _manifest_row(Path(manifest), key)
    root = Path(src) if src is not None else Path(meta.get(SRC_ROOT_KEY, "."))
    path = resolve_inside(root, str(row["source_path"]), "source_path")
    image = read_image(path)
    if file_sha256(path) != row["source_sha256"]:
        raise LowsimError("source file differs from the one sample "
                          f"{key} was made from (sha256 mismatch)", path)
    model = get_model(row.get("model") or "v1")
    if row["sampler"] not in model.samplers:
        raise LowsimError(f"sample {key} used sampler {row['sampler']!r}, unknown to lowsim {__version__}")
    try:
        params = params_from_mapping(model.name, row)
        noise = sample_streams(int(row["seed"]), int(row["index"]))["noise"]
        geometry, bit_depth = Geometry.from_row(row), int(row["bit_depth"])
    except (TypeError, ValueError, KeyError) as err:
        raise LowsimError(f"row of sample {key} is damaged ({type(err).__name__}: {err})", manifest) from None
    clean, dark, _, record = render_recorded(image, geometry, params, noise, bit_depth, sampler=row["sampler"])
    check_record(row, record, key)
    return clean, dark, row


def _is_missing(value: Any) -> bool:
    """True for None and pandas' NaN/NA placeholders of null cells."""
    try:
        return value is None or bool(np.isnan(value))
    except (TypeError, ValueError):
        return False
