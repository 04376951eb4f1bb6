"""Class "odd input" for `transfer pretrain --params P --src DIR` (pairs made on the fly): every impossible
combination or unusable file is one line "error: ..." naming what was expected and what was given, a non-zero
exit, no traceback, and no run directory left behind."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from test_transfer_onthefly import write_photos
from transfer_robustness import TINY, assert_one_line_error, good, run_cli  # noqa: F401


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return write_photos(tmp_path_factory.mktemp("photos"))


def params_file(root: Path, text: str) -> Path:
    path = root / "params.json"
    path.write_text(text)
    return path


def test_a_tiny_onthefly_run_works(tmp_path: Path, photos: Path, capsys) -> None:
    code, _, err = run_cli(["pretrain", "--params", "lol", "--src", photos, "--run-dir", tmp_path / "run", *TINY,
                            "--iters", "1", "--workers", "0"], capsys)
    assert code == 0, err
    assert (tmp_path / "run" / "last" / "model.safetensors").is_file()


CASES = {
    "params and manifest": (lambda g, p, t: ["--params", "lol", "--src", p, "--manifest", g["manifest"]],
                            ["give --manifest (pre-generated pairs) or --params with --src", "not both"]),
    "params without src": (lambda g, p, t: ["--params", "lol"], ["needs both --params and --src",
                                                                 "got --params without --src"]),
    "src without params": (lambda g, p, t: ["--src", p], ["got --src without --params"]),
    "sampler without params": (lambda g, p, t: ["--manifest", g["manifest"], "--sampler", "normal"],
                               ["not both; got --manifest and --sampler"]),
    "unknown schema version": (lambda g, p, t: ["--params", params_file(t, json.dumps({"schema_version": 99})),
                                                "--src", p], ["params schema version 99 is not supported"]),
    "unreadable params": (lambda g, p, t: ["--params", params_file(t, "{not json"), "--src", p],
                          ["params.json: params file is not valid JSON"]),
    "missing params": (lambda g, p, t: ["--params", t / "none.json", "--src", p],
                       ["none.json: params file not found"]),
    "unknown shipped params": (lambda g, p, t: ["--params", "nosuch", "--src", p], ["no shipped params named"]),
    "bad sampler": (lambda g, p, t: ["--params", "lol", "--src", p, "--sampler", "magic"],
                    ["--sampler must be one of normal, empirical; got 'magic'"]),
    "empty src": (lambda g, p, t: ["--params", "lol", "--src", (t / "empty").mkdir() or t / "empty"],
                  ["empty: no images found"]),
    "missing src": (lambda g, p, t: ["--params", "lol", "--src", t / "gone"], ["gone: source folder not found"]),
    "raw input": (lambda g, p, t: ["--params", "lol", "--src", p, "--input", "raw"],
                  ["on-the-fly pretraining makes sRGB pairs", "--manifest"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_onthefly_input_is_one_line(tmp_path: Path, good: dict, photos: Path, capsys, case: str) -> None:
    extra, fragments = CASES[case]
    code, _, err = run_cli(["pretrain", "--run-dir", tmp_path / "run", *TINY, *extra(good, photos, tmp_path)],
                           capsys)
    assert_one_line_error(code, err, *fragments)
    assert not (tmp_path / "run").exists()


def test_an_unreadable_photo_stops_the_run_before_step_one(tmp_path: Path, capsys) -> None:
    photos = write_photos(tmp_path / "photos")
    (photos / "photo03.png").write_bytes(b"not a png")
    code, _, err = run_cli(["pretrain", "--params", "lol", "--src", photos, "--run-dir", tmp_path / "run", *TINY,
                            "--iters", "1"], capsys)
    assert_one_line_error(code, err, "cannot use source photo", "photo03.png")
    assert not (tmp_path / "run").exists()
