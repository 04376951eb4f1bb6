"""Throughput and memory of `lowsim generate` for both models and their samplers, side by side with the I/O floor.

    .venv/bin/python benchmarks/bench_generate.py [--data DIR] [--params-v1 FILE] [--params-v2 FILE]
                                                  [--n 48] [--workers 1,2]

Data: 512x512 crops of the clean photos in DIR/clean (default ../shared/data, or $LOWSIM_DATA); without
them the benchmark says so and exits 0. Four pipelines run in the same worker pools, one after another,
on the same samples (same sources and crops):

- v1:      what `lowsim generate` runs per sample with a v1 params file (`lowsim.generate.make_sample`):
           read the source, crop, draw, degrade (the exact table sampler for 8-bit sources), write dark +
           clean PNGs, hash them.
- v1-ref:  the same with v1's reference sampler (the stage functions literally: numpy's Poisson sampler,
           np.power gamma), what a straightforward implementation of v1 costs.
- v2-ref:  the same with a v2 params file (the ISP-structured chain of lowsim.degradation.v2), forced to
           its reference sampler isp-reference/v2 (the stage functions literally; what rows made before
           isp-fast/v2 existed record).
- v2-fast: the same with v2's default sampler isp-fast/v2 (lowsim.degradation.v2_fast).
- v2-fast-jpeg: v2-fast with the camera's JPEG stage on (the v2 file's draws with jpeg_quality JPEG_QUALITY).
- maths only, beside them: v2-fast-one-pass (the fast chain without its strips, one pass over the whole
           sensor: what the strips save) and v2-fast-downscale-1 (the same draws at downscale 1, sensor =
           output: the chain's cost per pixel, without the resolution a downscale > 1 adds).
- floor:   read the source, crop, write two PNGs (the clean crop and a dark-looking noisy image of the
           same size), nothing else: the I/O every generator of this dataset must do.

Reported in one table: the degradation maths alone (ms per 512x512x3 image, one core: OpenCV limited to one
thread, as in the generator's workers) and its ratio to v1; images/s per core of whole samples for each worker
count and the time ratio to the I/O floor. Also the peak memory of one sample from a 4000x6000 source.
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one core per process, like the generator's workers

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
from lowsim import generate as G  # noqa: E402
from lowsim.degradation.registry import get_model  # noqa: E402
from lowsim.degrade import REFERENCE_SAMPLER, TABLE_SAMPLER, choose_sampler  # noqa: E402
from lowsim.generate import local as GL, sample as GS  # noqa: E402
from lowsim.imageio import list_images, read_image, write_png  # noqa: E402
from lowsim.degradation import v2 as V2, v2_fast as V2F  # noqa: E402
from lowsim.params import V1_MODEL, V2_MODEL, IspParams, ParamDistribution  # noqa: E402

PIPELINES = ("v1", "v1-ref", "v2-ref", "v2-fast", "v2-fast-jpeg", "floor")
JPEG_QUALITY = 75.0  # of the v2-fast-jpeg pipeline
FORCED_SAMPLERS = {"v1-ref": REFERENCE_SAMPLER, "v2-ref": V2.SAMPLER}  # the others use the model's default


def representative_params(path: Path) -> Path:
    """A stand-in for params/lol.json while it does not exist, shaped like a LOL calibration run:
    ~1e4-1e6 photons at full scale, read noise of 0.5-2.5 levels, gains ~0.35, gamma ~0.7."""
    rng = np.random.default_rng(0)
    samples = {"black_level": rng.uniform(0.005, 0.03, 30), "gain_r": rng.uniform(0.25, 0.45, 30),
               "gain_g": rng.uniform(0.25, 0.45, 30), "gain_b": rng.uniform(0.25, 0.45, 30),
               "photon_scale": np.exp(rng.uniform(np.log(1e4), np.log(1e6), 30)),
               "read_sigma": rng.uniform(0.002, 0.01, 30), "gamma": rng.uniform(0.6, 0.9, 30)}
    return ParamDistribution.fit(samples, fixed={"illum_alpha": 0.1, "illum_gamma": 2.5},
                                 method="benchmark stand-in").save(path)


def representative_v2_params(path: Path) -> Path:
    """A v2 stand-in shaped like the LOL calibration, for when no v2 params file is given."""
    rng = np.random.default_rng(0)
    base = IspParams(illum_alpha=0.5, exposure=0.006, cast_r=1.2, shot_gain=1.3e-4, read_sigma=1e-4,
                     black_level=3e-5, chroma_nr=0.75, tone_gamma=2.5)
    samples = {n: getattr(base, n) * np.exp(0.3 * rng.standard_normal(30))
               for n in ("exposure", "cast_r", "cast_b", "shot_gain", "read_sigma", "black_level", "tone_gamma",
                         "illum_gamma", "illum_alpha")}
    samples["chroma_nr"] = rng.uniform(0.5, 0.95, 30)
    return ParamDistribution.fit(samples, fixed={"row_sigma": 0.0, "sharpen": 0.5, "downscale": 2.0}, model=V2_MODEL,
                                 method="benchmark stand-in").save(path)


def load_model_params(given: Path | None, default: Path, model: str, tmp: Path) -> ParamDistribution:
    """The params file given, else the default if it is of `model`, else a stand-in of that model."""
    for path in (given, default):
        if path is not None and path.is_file() and ParamDistribution.load(path).model == model:
            return ParamDistribution.load(path)
    make = representative_params if model == V1_MODEL else representative_v2_params
    print(f"no {model} params file: using a stand-in distribution")
    return ParamDistribution.load(make(tmp / f"{model.rsplit('/', 1)[1]}.json"))

# ------------------------------------------------------------------------------------------ workers

_STATE: dict[str, Any] = {}


def _init(pipeline: str, spec: G.RunSpec, dist: ParamDistribution) -> None:
    """Worker start: the generator's own initializer; v1-ref and v2-ref force their model's reference sampler."""
    GL._init_worker(spec, dist)
    _STATE.update(pipeline=pipeline, spec=spec, dist=dist)
    if pipeline in FORCED_SAMPLERS:
        render, forced = GS.render_recorded, FORCED_SAMPLERS[pipeline]
        GS.render_recorded = lambda *a, sampler=None, **k: render(*a, sampler=forced, **k)
    if pipeline.startswith("v2-fast"):
        V2F.poisson_grid_table()  # built once per worker (~1 s), like the first sample of a generate run


def _floor_sample(spec: G.RunSpec, index: int) -> None:
    """Read + crop + write two PNGs: the clean crop and a noisy dark-looking image."""
    source = spec.sources[G.source_index(spec.seed, index, len(spec.sources))]
    image = read_image(Path(spec.src_root) / source)
    geometry = G.draw_geometry(G.sample_streams(spec.seed, index)["geometry"], *image.shape[:2], spec.size)
    clean = G.apply_geometry(image, geometry)
    pattern = _STATE.get("pattern")
    if pattern is None or pattern.shape != clean.shape:
        pattern = _STATE["pattern"] = np.random.default_rng(0).integers(0, 6, clean.shape, dtype=np.uint8)
    key = G.sample_key(index)
    write_png(Path(spec.out) / "clean" / f"{key}.png", clean)
    write_png(Path(spec.out) / "dark" / f"{key}.png", (clean >> 3) + pattern)


def _work(indices: list[int]) -> int:
    for i in indices:
        if _STATE["pipeline"] == "floor":
            _floor_sample(_STATE["spec"], i)
        else:
            G.make_sample(_STATE["spec"], _STATE["dist"], i)
    return len(indices)


def throughput(pipeline: str, spec: G.RunSpec, dist: ParamDistribution, n: int, workers: int) -> float:
    """Images per second over n samples with `workers` processes (pool start and warm-up excluded)."""
    with GL._worker_environment(), ProcessPoolExecutor(workers, mp_context=GL._spawn_context(),
                                                      initializer=_init, initargs=(pipeline, spec, dist)) as pool:
        list(pool.map(_work, [[n + w] for w in range(workers)]))  # start and warm every worker
        chunks = [list(range(s, min(n, s + 4))) for s in range(0, n, 4)]
        start = time.perf_counter()
        done = sum(pool.map(_work, chunks))
        return done / (time.perf_counter() - start)


# ------------------------------------------------------------------------------------------ maths only


def degrade_timings(sources: list[Path], dists: dict[str, ParamDistribution], size: int,
                    repeats: int) -> dict[str, float]:
    """ms per image of the degradation maths alone (one core): v1's and v2's default and reference samplers."""
    import cv2

    cv2.setNumThreads(1)  # one core, as in the generator's workers (lowsim.generate.workers)
    rng = np.random.default_rng(1)
    crops = []
    for path in sources[:repeats]:
        image = read_image(path)
        if image.dtype == np.uint8:
            crops.append(G.apply_geometry(image, G.draw_geometry(rng, *image.shape[:2], size)))
    v1_params = [dists["v1"].sample(rng) for _ in crops]
    v2_params = [dists["v2"].sample(rng) for _ in crops]
    jpeg_params = [dataclasses.replace(p, jpeg_quality=JPEG_QUALITY) for p in v2_params]
    v1, v2 = get_model(V1_MODEL), get_model(V2_MODEL)
    cases = (("v1", v1_params, lambda c, p, r: v1.degrade_to_codes(c, p, r, 8, choose_sampler(c.dtype, p))),
             ("v1-ref", v1_params, lambda c, p, r: v1.degrade_to_codes(c, p, r, 8, REFERENCE_SAMPLER)),
             ("v2-ref", v2_params, lambda c, p, r: v2.degrade_to_codes(c, p, r, 8, V2.SAMPLER)),
             ("v2-fast", v2_params, lambda c, p, r: v2.degrade_to_codes(c, p, r, 8, V2.FAST_SAMPLER)),
             ("v2-fast-jpeg", jpeg_params, lambda c, p, r: v2.degrade_to_codes(c, p, r, 8, V2.FAST_SAMPLER)),
             ("v2-fast-one-pass", v2_params, lambda c, p, r: one_pass(v2.degrade_to_codes, c, p, r)),
             ("v2-fast-downscale-1", [dataclasses.replace(p, downscale=1.0) for p in v2_params],
              lambda c, p, r: v2.degrade_to_codes(c, p, r, 8, V2.FAST_SAMPLER)))
    timings: dict[str, float] = {}
    for name, params, fn in cases:
        fn(crops[0], params[0], np.random.default_rng(0))
        start = time.perf_counter()
        for c, p in zip(crops, params):
            fn(c, p, np.random.default_rng(0))
        timings[name] = (time.perf_counter() - start) / len(crops) * 1e3
    timings["table_share"] = sum(choose_sampler(np.uint8, p) == TABLE_SAMPLER for p in v1_params) / len(crops)
    return timings


def one_pass(degrade_to_codes, clean: np.ndarray, p: IspParams, rng: np.random.Generator) -> np.ndarray:
    """The fast sampler with its strips off (one strip larger than any sensor): the same bytes, one pass."""
    strip_pixels, V2F.STRIP_PIXELS = V2F.STRIP_PIXELS, 1 << 62
    try:
        return degrade_to_codes(clean, p, rng, 8, V2.FAST_SAMPLER)
    finally:
        V2F.STRIP_PIXELS = strip_pixels


def sample_rates(root: str, names: tuple[str, ...], dists: dict[str, ParamDistribution],
                 args: argparse.Namespace, tmp: Path) -> dict[tuple[str, int], float]:
    """Best images/s over the rounds for each pipeline and worker count (rounds interleave the pipelines)."""
    rates: dict[tuple[str, int], float] = {}
    for round_ in range(args.rounds):
        for workers in [int(w) for w in args.workers.split(",")]:
            for pipeline in PIPELINES:
                dist = dists["v2-jpeg" if pipeline.endswith("jpeg") else "v2" if pipeline.startswith("v2") else "v1"]
                spec = G.RunSpec(src_root=root, sources=names, params_path="-", params_sha256="-", seed=0,
                                 size=args.size, bit_depth=8, fractions=(("train", 1.0),),
                                 out=str(tmp / f"{pipeline}-{workers}-{round_}"), model=dist.model)
                rate = throughput(pipeline, spec, dist, args.n, workers)
                rates[pipeline, workers] = max(rate, rates.get((pipeline, workers), 0.0))
    return rates


def summary_table(maths: dict[str, float], rates: dict[tuple[str, int], float]) -> list[str]:
    """One markdown table: per pipeline, maths ms and x v1, then images/s per core and x floor per worker count."""
    workers = sorted({w for _, w in rates})
    head = "| pipeline | maths ms | x v1 | " + " | ".join(f"{w} worker(s): img/s | x floor" for w in workers) + " |"
    lines = [head, "|---" * (3 + 2 * len(workers)) + "|"]
    maths_only = [name for name in maths if name != "table_share" and name not in PIPELINES]
    for name in (*PIPELINES, *maths_only):
        cells = [f"{maths[name]:.1f}", f"{maths[name] / maths['v1']:.2f}"] if name in maths else ["-", "-"]
        for w in workers:
            cells += ([f"{rates[name, w] / w:.1f}", f"{rates['floor', w] / rates[name, w]:.2f}"]
                      if (name, w) in rates else ["-", "-"])
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


# ------------------------------------------------------------------------------------------ memory

MEMORY_CHILD = r"""
import json, sys, tracemalloc
from pathlib import Path
from lowsim import generate as G
from lowsim.params import ParamDistribution
src, params, out, size, depth = sys.argv[1:6]
dist = ParamDistribution.load(params)
spec = G.RunSpec(src_root=src, sources=("big.png",), params_path=params, params_sha256="-", seed=0,
                 size=None if size == "none" else int(size), bit_depth=int(depth), fractions=(("train", 1.0),),
                 out=out, model=dist.model)
def high_water_mb():
    # VmHWM: peak resident memory of this process image (ru_maxrss would include the parent's, from fork)
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
base = high_water_mb()
tracemalloc.start()
row = G.make_sample(spec, dist, 0)
peak = tracemalloc.get_traced_memory()[1]
print(json.dumps({"status": row["status"], "sampler": row.get("sampler"), "tracemalloc_mb": peak / 2**20,
                  "maxrss_mb": high_water_mb(), "import_rss_mb": base}))
"""


def memory_report(dist: ParamDistribution, tmp: Path) -> list[dict[str, Any]]:
    """Peak memory of one sample (v2) from a 4000x6000 8-bit source: cropped, whole, and whole at 16 bits."""
    import cv2

    params = dist.save(tmp / "memory-params.json")
    src = tmp / "big"
    src.mkdir()
    y, x = np.mgrid[0:4000, 0:6000].astype(np.float32)
    big = np.stack([x / 6000, y / 4000, (x + y) / 10000], axis=-1) * 200 + 20
    big += np.random.default_rng(0).normal(0, 6, big.shape).astype(np.float32)
    cv2.imwrite(str(src / "big.png"), np.clip(big, 0, 255).astype(np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    del big, x, y
    results = []
    for size, depth in (("512", "8"), ("none", "8"), ("none", "16")):
        out = tmp / f"mem-{size}-{depth}"
        done = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(src), str(params), str(out), size, depth],
                              capture_output=True, text=True, check=True)
        results.append({"crop": size, "bit_depth": depth, **json.loads(done.stdout)})
    return results


# ------------------------------------------------------------------------------------------ main


def main() -> int:
    default_data = Path(os.environ.get("LOWSIM_DATA", REPO.parent / "shared" / "data"))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=default_data, help="folder holding clean/")
    parser.add_argument("--params-v1", type=Path, default=None,
                        help="v1 params JSON [params/lol-v1.json, else a stand-in]")
    parser.add_argument("--params-v2", type=Path, default=None, help="v2 params JSON [params/lol.json, else a stand-in]")
    parser.add_argument("--n", type=int, default=48, help="samples per pipeline and worker count")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--rounds", type=int, default=2,
                        help="interleaved rounds over the pipelines; the best round of each is reported "
                             "(the least disturbed by other load on the machine)")
    parser.add_argument("--no-memory", action="store_true", help="skip the 4000x6000 memory measurement")
    args = parser.parse_args()

    clean = args.data / "clean"
    if not clean.is_dir():
        print(f"skipped: no clean photos at {clean} (pass --data or set LOWSIM_DATA)")
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-generate-") as tmp_name:
        tmp = Path(tmp_name)
        default = G.default_params_path()
        dists = {"v1": load_model_params(args.params_v1, default.with_name("lol-v1.json"), V1_MODEL, tmp),
                 "v2": load_model_params(args.params_v2, default, V2_MODEL, tmp)}
        dists["v2-jpeg"] = dataclasses.replace(dists["v2"], fixed={**dists["v2"].fixed, "jpeg_quality": JPEG_QUALITY})
        sources = list_images(clean)
        root = clean.resolve()
        print(f"{len(sources)} sources in {clean}; {args.size}x{args.size} crops; n={args.n} per run; "
              f"{os.cpu_count()} CPUs")

        runs = [degrade_timings(sources[::7], dists, args.size, repeats=24) for _ in range(args.rounds)]
        maths = {key: min(r[key] for r in runs) for key in runs[0]}
        names = tuple(p.relative_to(root).as_posix() for p in sources)
        rates = sample_rates(str(root), names, dists, args, tmp)
        print(f"\n{args.size}x{args.size} crops; maths: the degradation alone, one core (best of {args.rounds} "
              f"rounds; v1's table sampler chosen for {maths['table_share']:.0%} of v1 draws); samples: images/s "
              "per core of read + crop + degrade + write dark and clean PNGs, and the time per sample over the "
              "I/O floor's")
        print("\n".join(summary_table(maths, rates)))

        if not args.no_memory:
            print("\npeak memory, one sample from a 4000x6000 8-bit PNG (fresh process each)")
            for m in memory_report(dists["v2"], tmp):
                print(f"  crop {m['crop']:>4}, {m['bit_depth']:>2}-bit out, {m['sampler']}: peak RSS "
                      f"{m['maxrss_mb']:.0f} MB (after imports {m['import_rss_mb']:.0f} MB), "
                      f"numpy peak (tracemalloc) {m['tracemalloc_mb']:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
