"""The project-folder convention (lowsim.project, transfer.project): the four commands as a user types them."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from lowsim.project import calibrated_pairs, newest, resolve_params, shipped_params

PAIR_NAMES = ("101", "103", "104", "105", "106", "116")  # 116 falls in the held-out val split
TINY_BUDGETS = """\
[calibrate]
method = "joint"   # seconds per pair; the default isp fit takes minutes
workers = 2
[generate]
size = 64
[pretrain]
iters = 4
batch = 4
patch = 32
quiet = true
[finetune]
iters = 2
batch = 2
patch = 32
quiet = true
"""


def run_line(line: str, cwd: Path) -> subprocess.CompletedProcess:
    """One command line as typed (`lowsim ...` / `transfer ...`), run as `python -m` in `cwd`."""
    program, *args = shlex.split(line)
    return subprocess.run([sys.executable, "-m", program, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def copy_pairs(lol_dev: Path, dest: Path) -> Path:
    for kind in ("low", "high"):
        (dest / kind).mkdir(parents=True)
        for name in PAIR_NAMES:
            shutil.copy(lol_dev / kind / f"{name}.png", dest / kind / f"{name}.png")
    return dest


@pytest.mark.slow
def test_the_four_commands_chain_in_a_project_folder(tmp_path: Path, lol_dev: Path, clean_dir: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "lowsim.toml").write_text(TINY_BUDGETS)
    copy_pairs(lol_dev, tmp_path / "mypairs")
    lines = ["lowsim calibrate --pairs ../mypairs", f"lowsim generate --src {clean_dir / 'kodak24'} --n 24",
             "transfer pretrain", "transfer finetune --frac 0.1"]
    notes = []
    for line in lines:
        proc = run_line(line, project)
        assert proc.returncode == 0, f"{line}: {proc.stderr[-2000:]}"
        notes.append(proc.stdout)
    params = project / "params" / "mypairs.json"
    assert calibrated_pairs(params) == ((tmp_path / "mypairs").resolve(), "auto")
    manifest = project / "data" / "kodak24" / "manifest.parquet"
    assert (pd.read_parquet(manifest).status == "ok").sum() == 24
    assert "note: --params params/mypairs.json" in notes[1] and "--out data/kodak24" in notes[1]
    assert "note: --manifest data/kodak24/manifest.parquet" in notes[2]
    assert "note: --checkpoint runs/pretrain" in notes[3]
    pretrain = json.loads((project / "runs" / "pretrain" / "config.json").read_text())
    assert pretrain["total_steps"] == 4 and Path(pretrain["data"]["path"]).resolve() == manifest.resolve()
    finetune = json.loads((project / "runs" / "finetune" / "config.json").read_text())
    assert finetune["total_steps"] == 2
    assert Path(finetune["init_checkpoint"]["path"]).resolve().is_relative_to((project / "runs" / "pretrain"))
    assert Path(finetune["data"]["path"]).resolve() == (tmp_path / "mypairs").resolve()
    trained = (project / "runs" / "finetune" / "train_pairs.txt").read_text().split()
    held_out = (project / "runs" / "finetune" / "val_pairs.txt").read_text().split()
    assert held_out == ["116"] and trained and "116" not in trained


@pytest.mark.parametrize("line, first", [
    ("transfer pretrain", "lowsim generate --src DIR --n N"),
    ("transfer finetune", "transfer pretrain"),
])
def test_unresolvable_defaults_name_the_command_to_run_first(tmp_path: Path, line: str, first: str) -> None:
    proc = run_line(line, tmp_path)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and f"run `{first}" in lines[0], proc.stderr


def test_finetune_without_a_calibration_names_calibrate(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "pretrain"
    proc = run_line(f"transfer finetune --checkpoint {run}", tmp_path)
    assert proc.returncode != 0 and "run `lowsim calibrate --pairs DIR` first" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_a_config_key_that_is_no_option_is_refused(tmp_path: Path) -> None:
    (tmp_path / "lowsim.toml").write_text("[generate]\nsizee = 64\n")
    proc = run_line("lowsim generate --n 2", tmp_path)
    assert proc.returncode != 0 and "[generate] has no option 'sizee'" in proc.stderr
    assert not (tmp_path / "data").exists()


def test_config_named_by_environment_and_flags_override_it(tmp_path: Path, clean_dir: Path) -> None:
    config = tmp_path / "budgets.toml"
    config.write_text("[generate]\nsize = 48\nn = 3\n")
    env = {**os.environ, "LOWSIM_CONFIG": str(config)}
    proc = subprocess.run([sys.executable, "-m", "lowsim", "generate", "--src", str(clean_dir / "set5"), "--size",
                           "32", "--params", "lol-v1"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = pd.read_parquet(tmp_path / "data" / "set5" / "manifest.parquet")
    assert len(rows) == 3 and set(rows.width) == {32}  # n from the config, size from the flag


def test_params_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_params(None) == shipped_params("lol")  # nothing calibrated here yet
    assert resolve_params(Path("lol-v1")) == shipped_params("lol-v1")
    (tmp_path / "params").mkdir()
    older, newer = tmp_path / "params" / "a.json", tmp_path / "params" / "b.json"
    for path, stamp in ((newer, 2_000_000_000), (older, 1_000_000_000)):
        path.write_text("{}")
        os.utime(path, (stamp, stamp))
    assert newest([older, newer]) == newer
    assert resolve_params(None).resolve() == newer.resolve()


def test_versions_and_exit_codes(tmp_path: Path) -> None:
    from lowsim import __version__

    for program in ("lowsim", "transfer"):
        proc = run_line(f"{program} --version", tmp_path)
        assert proc.returncode == 0 and proc.stdout.strip().endswith(__version__)
    usage = run_line("lowsim generate --n 0", tmp_path)  # a bad value: usage error
    assert usage.returncode == 2 and usage.stderr.startswith("error: --n must be")
    unknown = run_line("transfer pretrain --itres 3", tmp_path)  # an unknown option: click's usage error
    assert unknown.returncode == 2 and "No such option" in unknown.stderr
    # a runtime failure: `transfer` where torch cannot be imported
    code = "import sys; sys.modules['torch'] = None; sys.argv = ['transfer', 'models']; " \
           "from transfer.entry import main; main()"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stderr.strip() == (
        "error: `transfer` needs torch; install it with: pip install 'lowsim[train]'")


def test_docs_record_no_machine_paths() -> None:
    """What the project writes into the repository (docs/results.md and the rest) names data relatively."""
    repo = Path(__file__).resolve().parents[1]
    machine = re.compile(r"(?<![\w.])/(?:work|home|root|tmp|Users|mnt)/\S+")
    found = {path.name: machine.findall(path.read_text(encoding="utf-8")) for path in (repo / "docs").glob("*.md")}
    assert not {name: hits for name, hits in found.items() if hits}
