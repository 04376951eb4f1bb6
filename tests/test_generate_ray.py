"""`lowsim generate --backend ray`: the local backend's dataset, byte for byte; retried shards; resume."""
from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Iterator

import pyarrow.parquet as pq
import pytest

from lowsim import generate as G
from lowsim.errors import LowsimError
from lowsim.generate.ray_executor import FAULTS_ENV, make_shard, versions
from test_generate import LOWSIM, assert_clean_error, assert_dataset_consistent, write_params, write_sources

N = 24
SHARD = 4  # N / SHARD shards on the first pass, starting at 0, 4, 8, ...


# ================================================================================== fixtures


def require_ray() -> ModuleType:
    """ray, or a skip without it; under CI=true (where the dev extra installs it) a failure."""
    if os.environ.get("CI", "").lower() == "true":
        import ray

        return ray
    return pytest.importorskip("ray")


@pytest.fixture(scope="module")
def params_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_params(tmp_path_factory.mktemp("params") / "params.json")


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The mixed sources of test_generate plus one unreadable file (an error row and replacement samples)."""
    root = write_sources(tmp_path_factory.mktemp("sources"))
    (root / "broken.png").write_bytes(b"\x89PNG not really")
    return root


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One local Ray instance of 2 CPUs for the module; its workers see the fault-injection folder."""
    ray = require_ray()
    folder = tmp_path_factory.mktemp("faults")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(FAULTS_ENV, str(folder))  # inherited by the instance's worker processes
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
        try:
            yield folder
        finally:
            ray.shutdown()


def run(out: Path, sources: Path, params: Path, **kw) -> G.GenerateResult:
    """N samples of 64x64 into out, with the manifest beside it (so both runs record the same dataset_dir)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return G.generate(src=sources, n=N, params=params, out=out, manifest=out.parent / "manifest.parquet",
                      size=64, seed=11, progress=False, **kw)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, sources: Path, params_file: Path) -> G.GenerateResult:
    """The local backend's dataset, one worker."""
    return run(tmp_path_factory.mktemp("local") / "set", sources, params_file, workers=1)


def dataset_files(out: Path) -> dict[str, bytes]:
    """Every file of a dataset but the journal (its parts follow the chunking, which may differ), by path."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and G.JOURNAL_DIR not in p.parts}


def assert_same_dataset(result: G.GenerateResult, reference: G.GenerateResult) -> None:
    """Byte-identical images, metadata.parquet and manifest (rows, columns and key-value metadata)."""
    assert result.rows == reference.rows
    assert dataset_files(result.out) == dataset_files(reference.out)
    assert result.manifest.read_bytes() == reference.manifest.read_bytes()


def stamps(out: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime) of every dark image by name: a file written again gets a new inode (atomic rename)."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.glob("*/dark/*")}


def plant(faults: Path, first: int, how: str, count: int) -> Path:
    """Make the next `count` attempts at the shard starting at index `first` fail (raise, or exit the worker)."""
    plan = faults / f"fail-{G.sample_key(first)}"
    plan.write_text(f"{how} {count}")
    return plan


# ================================================================================== identity


def test_reference_has_error_rows_and_replacements(reference: G.GenerateResult) -> None:
    assert reference.n_ok == N and reference.n_errors == 1
    assert max(r["index"] for r in reference.rows) >= N  # replacement samples beyond the first N indices
    assert_dataset_consistent(reference.out, reference.manifest, N)


@pytest.mark.parametrize("shard_size", [N * 2, 3])  # one task for everything; many tasks on both CPUs
def test_ray_makes_the_local_dataset(faults: Path, reference: G.GenerateResult, sources: Path,
                                     params_file: Path, tmp_path: Path, shard_size: int) -> None:
    result = run(tmp_path / "set", sources, params_file, backend="ray", shard_size=shard_size)
    assert result.n_made == reference.n_made
    assert_same_dataset(result, reference)


def test_cli_ray_with_its_own_instance(reference: G.GenerateResult, sources: Path, params_file: Path,
                                       tmp_path: Path) -> None:
    """The CLI starts (and stops) its own one-CPU local instance; the output is still the local one."""
    require_ray()
    out = tmp_path / "set"
    result = subprocess.run([str(LOWSIM), "generate", "--src", str(sources), "--params", str(params_file),
                             "--out", str(out), "--manifest", str(tmp_path / "manifest.parquet"), "--n", str(N),
                             "--size", "64", "--seed", "11", "--no-progress", "--backend", "ray",
                             "--workers", "1"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"{N} samples in" in result.stdout and "1 unreadable source" in result.stdout
    # the Parquet footers record each run's own command line (the CLI's here, the API's for the reference):
    # every other file byte for byte, the tables themselves value for value
    made, expected = dataset_files(out), dataset_files(reference.out)
    tables = sorted(name for name in expected if name.endswith(".parquet"))
    assert {k: v for k, v in made.items() if k not in tables} == {k: v for k, v in expected.items() if k not in tables}
    for name in tables + [None]:
        ours = out / name if name else tmp_path / "manifest.parquet"
        theirs = reference.out / name if name else reference.manifest
        assert pq.read_table(ours).equals(pq.read_table(theirs)), name


# ================================================================================== failures and resume


def test_failed_shards_are_retried(faults: Path, reference: G.GenerateResult, sources: Path,
                                   params_file: Path, tmp_path: Path) -> None:
    raised = plant(faults, 4, "raise", 2)
    crashed = plant(faults, 12, "exit", 1)  # the worker process dies, as when the OS kills it
    try:
        result = run(tmp_path / "set", sources, params_file, backend="ray", shard_size=SHARD)
    finally:
        spent = raised.read_text(), crashed.read_text()
        raised.unlink()
        crashed.unlink()
    assert spent == ("raise 0", "exit 0")  # every planted failure happened
    assert_same_dataset(result, reference)


@pytest.mark.parametrize("how, why", [("raise", ": injected failure"), ("exit", ", its worker process died")])
def test_exhausted_retries_name_the_shard_and_resume_keeps_finished_shards(
        faults: Path, reference: G.GenerateResult, sources: Path, params_file: Path, tmp_path: Path,
        how: str, why: str) -> None:
    out = tmp_path / "set"
    plan = plant(faults, 8, how, 2)
    try:
        with pytest.raises(LowsimError, match=r"shard 00000008-00000011 \(4 samples\) failed after 2 attempts"
                                              + why + ".*run the same command again"):
            run(out, sources, params_file, backend="ray", shard_size=SHARD, max_retries=1)
    finally:
        plan.unlink()
    journaled = G.Journal(out).load()
    assert journaled and not set(range(8, 12)) & set(journaled)
    before = stamps(out)
    result = run(out, sources, params_file, backend="ray", shard_size=SHARD)
    assert result.n_made == reference.n_made - len(journaled)
    kept = {f"{G.sample_key(i)}.png" for i, r in journaled.items() if r["status"] == "ok"}
    assert {name for name, t in stamps(out).items() if before.get(name) == t} >= kept  # never made again
    assert_same_dataset(result, reference)


def test_resume_makes_only_what_is_missing(faults: Path, reference: G.GenerateResult, sources: Path,
                                           params_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "set"
    run(out, sources, params_file, backend="ray", shard_size=SHARD)
    # An interrupted run: the shard starting at 16 never journaled, and one image of another shard lost.
    parts = sorted((out / G.JOURNAL_DIR).glob(f"part-{16:0{G.KEY_DIGITS + 1}d}-*.parquet"))
    assert len(parts) == 1
    parts[0].unlink()
    next(out.glob("*/clean/00000002.png")).unlink()
    before = stamps(out)
    result = run(out, sources, params_file, backend="ray", shard_size=SHARD)
    redone = {name for name, t in stamps(out).items() if before.get(name) != t}
    made = {f"{G.sample_key(i)}.png" for i in (2, 16, 17, 18, 19)}
    assert result.n_made == 5
    assert redone == made & set(stamps(out))  # (one of them may be an error row, without files)
    assert_same_dataset(result, reference)


# ================================================================================== checks and messages


def test_a_worker_with_other_versions_refuses_to_work(reference: G.GenerateResult, tmp_path: Path) -> None:
    from lowsim.params import ParamDistribution

    spec = G.RunSpec(src_root=str(tmp_path), sources=("a.png",), params_path="-", params_sha256="-", seed=0,
                     size=64, bit_depth=8, fractions=(("train", 1.0),), out=str(reference.out))
    dist = ParamDistribution.load(write_params(tmp_path / "p.json"))
    with pytest.raises(LowsimError, match="install the same lowsim and numpy on every node"):
        make_shard(spec, dist, [0], {**versions(), "numpy": "0.0"})
    with pytest.raises(LowsimError, match="--out folder not found on worker host .* shared by every node"):
        make_shard(dataclasses.replace(spec, out=str(tmp_path / "elsewhere")), dist, [0], versions())


def test_cli_without_ray_says_how_to_install_it(sources: Path, params_file: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "site"
    (blocker / "ray").mkdir(parents=True)
    (blocker / "ray" / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'ray'\")\n")
    env = {**os.environ, "PYTHONPATH": str(blocker)}
    base = [str(LOWSIM), "generate", "--src", str(sources), "--params", str(params_file), "--out",
            str(tmp_path / "out"), "--n", "2", "--no-progress"]
    result = subprocess.run([*base, "--backend", "ray"], capture_output=True, text=True, timeout=120, env=env)
    assert_clean_error(result, r"--backend ray needs Ray, which is not installed: pip install 'lowsim\[ray\]'")
    assert not (tmp_path / "out").exists()  # refused before anything was written
    result = subprocess.run([*base, "--address", "head:6379"], capture_output=True, text=True, timeout=120)
    assert_clean_error(result, "--address is an option of --backend ray; got --backend local")
