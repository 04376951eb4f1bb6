"""`lowsim generate`, `lowsim regenerate` and `lowsim preview`."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from lowsim.cli import app, interruptible
from lowsim.errors import LowsimError

FORMATS = ("imagefolder", "webdataset")
PARAMS_HELP = ("Params JSON, or a shipped one by name (lol, lol-v2d, lol-v2c, lol-v2a, lol-v2b, lol-v1) "
               "[the newest params/*.json here, else lol].")


def _params_or_default(params: Optional[Path]) -> Path:
    """--params (a file or a shipped name), else the project's newest params, else the shipped LOL calibration."""
    from lowsim.project import resolve_params

    return resolve_params(params)


def _dataset_paths(src: Optional[Path], out: Optional[Path], manifest: Optional[Path]) -> tuple[Path, Path]:
    """--out (default data/<src folder name>) and --manifest (default OUT/manifest.parquet), defaults printed."""
    from lowsim.project import default_dataset_dir, default_manifest, describe_default

    if out is None:
        out = describe_default("--out", default_dataset_dir(src), "data/<src folder name>")
    if manifest is None:
        manifest = describe_default("--manifest", default_manifest(out), "beside the dataset")
    return out, manifest


# Help texts of `generate`'s longer options, kept here so the command's signature stays readable.
WORKERS_HELP = ("Worker processes, or with --backend ray and no --address the CPUs of a new local Ray instance "
                "(the result does not depend on it).")
BACKEND_HELP = ("local: worker processes on this machine; ray: shards of samples as Ray tasks (pip install "
                "'lowsim\\[ray]'). Same output.")
ADDRESS_HELP = ("Ray cluster to run on (HEAD:6379 or auto; --src and --out must be on a filesystem every node "
                "mounts at the same path; default: a new local instance).")
SHARD_SIZE_HELP = "Samples per Ray task (default: up to 16, fewer so that every CPU gets about 4 shards)."
SAMPLER_HELP = ("normal (the fitted multivariate normal) or empirical (per-pair fits with a small jitter; v2 files) "
                "[default: the params file's].")
OUTPUT_HELP = ("srgb (dark PNGs) or raw (packed 16-bit Bayer .npy dark frames; needs a raw params file such as the "
               "shipped sony_a7s2) [default: what the params file is for].")
MAX_PIXELS_HELP = ("Refuse images with more decoded pixels than this, from their header (decompression bombs) "
                   "[default: 100000000].")
RECIPE_HELP = ("generic (albumentations darkening + noise; pip install 'lowsim\\[recipes]'), unprocessing (Brooks "
               "et al. 2019's ranges), uncalibrated (model v2 from broad default ranges) or calibrated (--params). "
               "See docs/recipes.md.")
FORMAT_HELP = ("imagefolder (per-split folders of PNGs with metadata.parquet), or webdataset: the same plus tar "
               "shards of 1000 samples in OUT/webdataset/ for streaming.")


def _recipe_params_file(recipe: str, params: Optional[Path], output: Optional[str]) -> Path:
    """The params file the recipe generates from (--params or its default for calibrated), checked for --output."""
    from lowsim.raw.synthesize import check_output_kind
    from lowsim.recipes import recipe_params

    params = recipe_params(recipe, params)
    params = _params_or_default(params) if recipe == "calibrated" else params
    check_output_kind(params, output)
    return params


def _run_showing_warnings(**options: Any) -> Any:
    """lowsim.generate.generate(**options), then its empty-split warnings as one yellow line each on stderr."""
    import warnings

    from lowsim.generate import generate as run
    from lowsim.generate.publish import EmptySplitWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", EmptySplitWarning)
        result = run(**options)
    for warning in caught:
        typer.secho(f"warning: {warning.message}", err=True, fg=typer.colors.YELLOW)
    return result


def _finish_dataset(result: Any, data_format: str) -> None:
    """Write the WebDataset shards when asked for, and say what the run made."""
    if data_format == "webdataset":
        from lowsim.webdataset import write_shards

        shards = write_shards(result.manifest)
        typer.echo(f"{len(shards)} WebDataset shard(s) in {result.out / 'webdataset'}")
    errors = f", {result.n_errors} unreadable source(s) skipped (error rows)" if result.n_errors else ""
    typer.echo(f"{result.n_ok} samples in {result.out} ({result.n_made} made now{errors}); "
               f"manifest {result.manifest}")


@app.command()
@interruptible("run the same command again to resume")
def generate(
    src: Optional[Path] = typer.Option(None, "--src", help="Folder of clean photos (recursive; "
                                       "default: scikit-image's sample photos)."),
    n: int = typer.Option(..., "--n", help="Number of ok samples to make."),
    params: Optional[Path] = typer.Option(None, "--params", help=PARAMS_HELP),
    out: Optional[Path] = typer.Option(None, "--out", help="Dataset folder (resumable) [data/<src folder name>]."),
    manifest: Optional[Path] = typer.Option(None, "--manifest",
                                            help="Manifest Parquet [OUT/manifest.parquet]."),
    size: Optional[int] = typer.Option(None, "--size", help="Random size x size crops (with flips); "
                                       "default: whole images."),
    seed: int = typer.Option(0, "--seed", help="Run seed: with the same inputs, the same dataset."),
    workers: int = typer.Option(1, "--workers", help=WORKERS_HELP),
    bit_depth: int = typer.Option(8, "--bit-depth", help="8 or 16-bit PNG output."),
    split_fractions: str = typer.Option("train=0.9,val=0.05,test=0.05", "--split-fractions",
                                        help="Split names and fractions, assigned by source photo."),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress",
                                            help="Progress bar on stderr (default: when it is a terminal)."),
    backend: str = typer.Option("local", "--backend", help=BACKEND_HELP),
    address: Optional[str] = typer.Option(None, "--address", help=ADDRESS_HELP),
    shard_size: Optional[int] = typer.Option(None, "--shard-size", help=SHARD_SIZE_HELP),
    model: Optional[str] = typer.Option(None, "--model", help="v1 or v2; must be the params file's model "
                                        "(default: the params file's)."),
    sampler: Optional[str] = typer.Option(None, "--sampler", help=SAMPLER_HELP),
    output: Optional[str] = typer.Option(None, "--output", help=OUTPUT_HELP),
    max_pixels: Optional[int] = typer.Option(None, "--max-pixels", help=MAX_PIXELS_HELP),
    recipe: str = typer.Option("calibrated", "--recipe", help=RECIPE_HELP),
    data_format: str = typer.Option("imagefolder", "--format", help=FORMAT_HELP),
) -> None:
    """Degrade clean photos into a synthetic low-light dataset (dark + clean PNGs and a Parquet manifest).

    The output does not depend on --workers, --backend or --shard-size. Run the same command to resume.
    """
    import sys

    from lowsim.generate import ignore_file_size_signal
    from lowsim.imageio import set_max_pixels

    set_max_pixels(max_pixels)
    ignore_file_size_signal()
    if data_format not in FORMATS:
        raise LowsimError(f"--format must be one of {', '.join(FORMATS)}; got {data_format!r}")
    params = _recipe_params_file(recipe, params, output)
    if progress is None:
        progress = sys.stderr.isatty()
    out, manifest = _dataset_paths(src, out, manifest)
    result = _run_showing_warnings(src=src, n=n, params=params, out=out, manifest=manifest, size=size,
                                   seed=seed, workers=workers, bit_depth=bit_depth, split_fractions=split_fractions,
                                   progress=progress, backend=backend, address=address, shard_size=shard_size,
                                   model=model, sampler=sampler,
                                   on_note=lambda message: typer.echo(f"note: {message}", err=True),
                                   # calibrated (the default): rows as the API writes them
                                   recipe=None if recipe == "calibrated" else recipe)
    _finish_dataset(result, data_format)


@app.command()
@interruptible("nothing was written; run the same command again")
def regenerate(
    manifest: Path = typer.Argument(..., help="Manifest Parquet written by `lowsim generate`."),
    key: str = typer.Option(..., "--key", help="Key of the sample to rebuild."),
    out: Path = typer.Option(..., "--out", help="PNG to write the rebuilt dark image to (.npy for a raw dataset)."),
    clean_out: Optional[Path] = typer.Option(None, "--clean-out", help="Also write the clean target here."),
    src: Optional[Path] = typer.Option(None, "--src", help="Source folder, if it moved since generation."),
    max_pixels: Optional[int] = typer.Option(None, "--max-pixels", help="Refuse images with more decoded "
                                             "pixels than this, from their header (decompression bombs) "
                                             "[default: 100000000]."),
) -> None:
    """Rebuild one sample bit-exactly from its manifest row."""
    from lowsim.generate import regenerate as rebuild
    from lowsim.imageio import set_max_pixels, write_png
    from lowsim.safe_io import check_write_target

    from lowsim.raw.synthesize import write_packed

    set_max_pixels(max_pixels)
    for target in (out, clean_out):  # before the work: refuse a target we would not write to
        if target is not None:
            check_write_target(target)
    clean, dark, _ = rebuild(manifest, key, src)
    if dark.ndim == 3 and dark.shape[2] == 4:  # a packed raw dark frame (model lowsim.raw/v1)
        write_packed(out.with_suffix(".npy"), dark)
        out = out.with_suffix(".npy")
    else:
        write_png(out, dark)
    if clean_out is not None:
        write_png(clean_out, clean)
    typer.echo(f"wrote {out}" + (f" and {clean_out}" if clean_out is not None else ""))


@app.command()
@interruptible("nothing was written; run the same command again")
def preview(
    src: Path = typer.Option(..., "--src", help="One photo."),
    params: Optional[Path] = typer.Option(None, "--params", help=PARAMS_HELP),
    seed: int = typer.Option(0, "--seed", help="Seed of the parameter draw and the noise."),
    out: Path = typer.Option(..., "--out", help="PNG to write."),
    max_pixels: Optional[int] = typer.Option(None, "--max-pixels", help="Refuse images with more decoded "
                                             "pixels than this, from their header (decompression bombs) "
                                             "[default: 100000000]."),
) -> None:
    """Show the degradation step by step (the paper's Figure 3), without and with the illumination map."""
    from lowsim.imageio import set_max_pixels
    from lowsim.preview import preview as render

    set_max_pixels(max_pixels)
    typer.echo(f"wrote {render(src, _params_or_default(params), out, seed)}")
