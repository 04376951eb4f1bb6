"""`lowsim generate`: degrade clean photos into a synthetic low-light dataset with a Parquet manifest.

Layout of an output folder OUT (the dataset):

    OUT/<split>/clean/<key>.png   clean target, the same crop/flip as the dark image (<split>: train, val, test)
    OUT/<split>/dark/<key>.png    the degraded image
    OUT/<split>/metadata.parquet  that split's ok rows, file names relative to OUT/<split>
    OUT/metadata.parquet          all ok rows, file names relative to OUT
    OUT/README.md                 the dataset card (Hugging Face YAML header; publish.py, lowsim.dataset_card)
    OUT/.lowsim-journal/          run signature, a Parquet part of finished rows per chunk (local) or shard
                                  (Ray), lock: the resume state; the parts are merged into the manifest

and the manifest (default OUT/manifest.parquet) holds every row, ok and error. File names are relative to
the folder of the file that holds them (the `imagefolder` convention: columns named `*_file_name` are image
paths relative to the metadata file; one folder per split, so `datasets.load_dataset("imagefolder",
data_dir=OUT)` yields the splits, each with `clean` and `dark` image columns). For that reason the source
photo's path is in `source_path` (relative to the --src folder), not in a `*_file_name` column, which the
loader would try to open. Runs made before the per-split layout (OUT/clean, OUT/dark) still resume and read.
The manifest's Parquet key-value metadata holds
`lowsim.dataset_dir` (OUT relative to the manifest's folder), `lowsim.src_root` (the --src folder),
`lowsim.params` (the params file's JSON) and `lowsim.command` (the command that makes the dataset).

Samples. Sample i has key `f"{i:08d}"`. Its source is the (i mod S)-th entry of cycle i // S, each cycle a
seeded shuffle of the S sources. All its random draws come from three independent child streams of
SeedSequence(seed, spawn_key=(i,)): geometry (crop, flips, transpose), parameters (ParamDistribution.sample),
noise (lowsim.degrade); never from global state, so a sample does not depend on --workers or on which
samples were made before. Its split is `assign_split(source_path)`: by source, not by key, so crops of one
photo (sources are reused when N exceeds their number) never straddle train and test.

Bad sources. A source that cannot be read is recorded once, as an error row (status "error", the message,
key of the first sample that drew it) and the samples that drew it are replaced by later indices: the
manifest always has exactly N ok rows (keys need not be contiguous) plus one error row per bad source.

Resume. Image files are written atomically; each finished chunk of rows is journaled atomically; the
manifest is written atomically at the end. Running the same command again (after a crash, Ctrl-C or
kill -9) trusts only journaled rows whose files exist with the recorded size and sha256, removes orphan temp
files, makes only what is missing, and rewrites the manifest. The run signature (sources, params file
hash, seed, size, bit depth, split fractions, model and sampler versions) is stored in the journal; a
resume with any of them different is refused. --n may change: more samples extend the run; fewer drop the
surplus files.

Backends. `--backend local` makes chunks of missing indices in a pool of spawned processes and journals each
chunk as it comes back (local.py); `--backend ray` makes shards of them as Ray tasks, each journaling its own
shard (ray_executor.py). Both run under `driver._run`, so the replacement samples, the journal, resume and
the manifest are the same, and so is every output byte.

Modules. plan.py holds the sampling plan (layout names, sources, seeded streams, source order, geometry,
bit depth, RunSpec); sample.py the work on one sample (make_sample, render_sample, regenerate); journal.py
the resume state (Journal, row_is_intact, accept_rows); `synthesize` (sample.py) is the one pure step from source
pixels and a sample's streams to its clean and dark images, which transfer's on-the-fly pretraining calls too;
workers.py what both executors share (RunMissing,
chunk_size, worker-process setup); local.py the process-pool executor; ray_executor.py the Ray executor;
driver.py `generate` itself. Imports go one way only, with no cycle: driver -> {plan, journal, workers,
local, ray_executor (lazily)}; local and ray_executor -> {sample, journal, plan, workers}; sample -> plan;
journal -> plan; plan and workers import no sibling; nothing imports driver but this file.
"""
from __future__ import annotations

from lowsim.generate.driver import GenerateResult, generate, load_distribution
from lowsim.generate.journal import Journal
from lowsim.generate.plan import (JOURNAL_DIR, KEY_DIGITS, SKIMAGE_PHOTOS, STREAMS, Geometry, RunSpec,
                                  apply_geometry, default_params_path, draw_geometry, find_sources,
                                  parse_fractions, sample_key, sample_streams, source_index, streams_of,
                                  to_bit_depth)
from lowsim.generate.sample import Synthesized, make_sample, regenerate, synthesize
from lowsim.generate.workers import ignore_file_size_signal

__all__ = ["GenerateResult", "Geometry", "JOURNAL_DIR", "Journal", "KEY_DIGITS", "RunSpec", "SKIMAGE_PHOTOS",
           "STREAMS", "Synthesized", "apply_geometry", "default_params_path", "draw_geometry", "find_sources",
           "generate", "ignore_file_size_signal", "load_distribution", "make_sample", "parse_fractions",
           "regenerate", "sample_key", "sample_streams", "source_index", "streams_of", "synthesize",
           "to_bit_depth"]


# `lowsim.generate(...)` calls lowsim.api.generate (this module is the package attribute of that name)
from lowsim.api import callable_module  # noqa: E402

callable_module(__name__)
