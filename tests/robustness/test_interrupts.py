"""Interrupts and concurrency: Ctrl-C prints the resume hint and exits 130 with no temp file left; a second
generate into the same folder is refused naming the holder's pid; a damaged or missing run record is rebuilt
from the dataset's manifest and journal (not a request to delete good samples); no message names a flag
that does not exist."""
from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tokenize
from pathlib import Path

import pytest
import typer

from lowsim.generate.journal import LOCK_FILE, RUN_FILE
from lowsim.generate.plan import JOURNAL_DIR
from tests.robustness.conftest import (REPO, assert_one_line_error, default_sigint, invoke, snapshot,
                                       subprocess_env, temp_files)

pytestmark = pytest.mark.usefixtures("in_tmp_folder")


def _generate_args(run: dict[str, Path], out: Path, n: int = 6, *extra: str) -> list[str]:
    return ["generate", "--src", str(run["src"]), "--n", str(n), "--size", "48", "--params", str(run["params"]),
            "--out", str(out), "--manifest", str(out.parent / f"{out.name}.parquet"), "--no-progress", *extra]


def _copy_run(good_run: dict[str, Path], tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(good_run["out"], out)
    shutil.copy(good_run["manifest"], tmp_path / "out.parquet")
    return out


def _dataset(out: Path) -> dict[str, str]:
    """The dataset's bytes by relative path, without the resume state (journal) itself."""
    return {str(Path(k).relative_to(out)): v for k, v in snapshot(out).items() if JOURNAL_DIR not in k}


# ================================================================================ Ctrl-C


def test_ctrl_c_prints_the_resume_hint_exits_130_and_leaves_no_temp_file(good_run: dict[str, Path],
                                                                         tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = _generate_args(good_run, out, 300)
    proc = subprocess.Popen([sys.executable, "-m", "lowsim", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=subprocess_env(), start_new_session=True, preexec_fn=default_sigint)
    deadline = time.monotonic() + 60
    while not list((out / JOURNAL_DIR).glob("part-*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal does: the whole process group
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "interrupted: run the same command again to resume", stderr
    assert "Traceback" not in stderr and temp_files(tmp_path) == []
    assert not (tmp_path / "out.parquet").exists()  # the manifest is written only by a finished run


# ================================================================================ concurrent runs


def test_a_second_generate_names_the_pid_holding_the_folder(good_run: dict[str, Path], tmp_path: Path) -> None:
    out = _copy_run(good_run, tmp_path)
    before = _dataset(out)
    with open(out / JOURNAL_DIR / LOCK_FILE, "a+") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.truncate(0)
        held.write(f"{os.getpid()}\n")
        held.flush()
        result = invoke(*_generate_args(good_run, out, 8))
    assert_one_line_error(result, 2, str(out), rf"another generate is writing here \(pid {os.getpid()}\)")
    assert _dataset(out) == before


def test_two_fresh_generates_at_once_one_wins_the_other_says_why(good_run: dict[str, Path],
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "out"
    procs = [subprocess.Popen([sys.executable, "-m", "lowsim", *_generate_args(good_run, out, 6)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env())
             for _ in range(2)]
    results = [(p.pid, *p.communicate(timeout=120), p.returncode) for p in procs]
    for pid, _, stderr, code in results:
        other = next(q for q, *_ in results if q != pid)
        assert code == 0 or re.fullmatch(rf"error: {re.escape(str(out))}: another generate is writing here "
                                         rf"\(pid {other}\); .*\n", stderr), stderr
    assert any(code == 0 for *_, code in results)
    assert len(list(out.glob("*/dark/*"))) == 6 and temp_files(tmp_path) == []  # OUT/<split>/dark/


# ================================================================================ the run record


@pytest.mark.parametrize("damage", ["truncate", "garbage", "delete"])
def test_a_damaged_run_record_is_rebuilt_and_good_samples_kept(good_run: dict[str, Path], tmp_path: Path,
                                                              damage: str) -> None:
    out = _copy_run(good_run, tmp_path)
    run_file = out / JOURNAL_DIR / RUN_FILE
    original, before = run_file.read_text(), _dataset(out)
    if damage == "delete":
        run_file.unlink()
    else:
        run_file.write_text(original[:40] if damage == "truncate" else "\x00\x01 not json")
    result = invoke(*_generate_args(good_run, out))
    assert result.code == 0, result.stderr
    assert "note:" in result.stderr and "rebuilt from the dataset's manifest and journal" in result.stderr
    assert "0 made now" in result.stdout
    assert json.loads(run_file.read_text()) == json.loads(original)
    assert _dataset(out) == before


def test_a_damaged_run_record_with_other_settings_is_refused(good_run: dict[str, Path], tmp_path: Path) -> None:
    out = _copy_run(good_run, tmp_path)
    (out / JOURNAL_DIR / RUN_FILE).write_text("{")
    before = snapshot(out)
    result = invoke(*_generate_args(good_run, out, 6, "--seed", "7"))
    assert_one_line_error(result, 2, str(out), "run.json was damaged", "seed: was 0, now 7")
    assert snapshot(out) == before


def test_a_journal_row_pointing_outside_the_dataset_is_not_trusted(good_run: dict[str, Path],
                                                                   tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = _copy_run(good_run, tmp_path)
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"not ours")
    part = sorted((out / JOURNAL_DIR).glob("part-*.parquet"))[0]
    table = pq.read_table(part).to_pandas()
    table.loc[0, "dark_file_name"] = "../outside.png"
    pq.write_table(pa.Table.from_pandas(table, preserve_index=False), part)
    before = _dataset(out)
    result = invoke(*_generate_args(good_run, out))
    assert result.code == 0, result.stderr
    assert "1 made now" in result.stdout  # the row was remade, the outside file neither read as ours nor written
    assert outside.read_bytes() == b"not ours" and _dataset(out) == before


# ================================================================================ messages


def _lowsim_options() -> set[str]:
    from lowsim.cli import _register_commands, app

    _register_commands()
    group = typer.main.get_command(app)
    return {opt for command in (group, *group.commands.values()) for param in command.params  # --version too
            for opt in (*param.opts, *param.secondary_opts)}


def test_no_message_names_a_flag_that_does_not_exist() -> None:
    known = _lowsim_options() | {"--head", "--port"}  # `ray start --head --port=...`, quoted from Ray
    named: dict[str, str] = {}
    for path in sorted((REPO / "src" / "lowsim").rglob("*.py")):
        with tokenize.open(path) as fh:
            for token in tokenize.generate_tokens(fh.readline):
                if token.type == tokenize.STRING:
                    for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", token.string):
                        named.setdefault(flag, f"{path.name}:{token.start[0]}")
    unknown = {flag: where for flag, where in named.items() if flag not in known}
    assert not unknown, unknown
    assert "--no-strict" not in named
