"""Shared helpers of the robustness suite: run a lowsim command (in-process or as a subprocess), check that
it failed with one clean line, and snapshot folders to prove earlier good output is byte-for-byte unchanged."""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import pytest

from lowsim.params import ParamDistribution

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    """What a command did: exit code and both output streams."""

    code: int
    stdout: str
    stderr: str


def invoke(*args: str | os.PathLike[str]) -> Result:
    """Run `lowsim ARGS` in this process through its real entry point (lowsim.cli.main)."""
    from lowsim.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([os.fspath(a) for a in args])
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    return Result(code, out.getvalue(), err.getvalue())


def subprocess_env() -> dict[str, str]:
    """The environment for a `python -m lowsim` child: this checkout's sources first."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def run_lowsim(*args: str | os.PathLike[str], timeout: float = 120,
               preexec: Callable[[], Any] | None = None, cwd: Path | None = None) -> Result:
    """Run `python -m lowsim ARGS` as a child process (for signals, resource limits, file names as bytes)."""
    proc = subprocess.run([sys.executable, "-m", "lowsim", *map(os.fspath, args)], capture_output=True,
                          text=True, timeout=timeout, env=subprocess_env(), preexec_fn=preexec, cwd=cwd)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def default_sigint() -> None:
    """preexec_fn: restore SIGINT's default (a shell's background jobs inherit it ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def assert_one_line_error(result: Result, code: int, *patterns: str) -> str:
    """The command exited `code` with exactly one 'error: ...' line matching every pattern; no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("note:")]
    assert result.code == code, (result.code, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for pattern in patterns:
        assert re.search(pattern, lines[0]), (pattern, lines[0])
    return lines[0]


def snapshot(*roots: Path) -> dict[str, str]:
    """sha256 of every file (and the target of every symlink) under the roots, by path."""
    found: dict[str, str] = {}
    for root in roots:
        paths = [root] if not root.is_dir() else sorted(root.rglob("*"))
        for path in paths:
            if path.is_symlink():
                found[str(path)] = "link->" + os.readlink(path)
            elif path.is_file():
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def temp_files(root: Path) -> list[Path]:
    """Leftover temp files of atomic writes under root."""
    return sorted(p for p in root.rglob("*.tmp"))


def photo(height: int, width: int, seed: int = 1) -> np.ndarray:
    """A smooth colour gradient with noise, 8-bit BGR (for cv2.imwrite)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x / width, y / height, (x + y) / (height + width)], axis=-1) * 200 + 20
    return np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)


def write_params(path: Path) -> Path:
    """A small fitted v1 distribution."""
    rng = np.random.default_rng(0)
    samples = {"black_level": rng.uniform(0.01, 0.05, 12), "gain_r": rng.uniform(0.15, 0.3, 12),
               "gain_g": rng.uniform(0.15, 0.3, 12), "gain_b": rng.uniform(0.15, 0.3, 12),
               "photon_scale": rng.uniform(200, 800, 12), "read_sigma": rng.uniform(0.002, 0.01, 12),
               "gamma": rng.uniform(0.8, 1.3, 12)}
    return ParamDistribution.fit(samples, fixed={"illum_alpha": 0.3, "illum_gamma": 1.0}).save(path)


def write_sources(root: Path, count: int = 3) -> Path:
    """`count` small photos a.png, b.png, ... under root."""
    root.mkdir(parents=True, exist_ok=True)
    for k in range(count):
        cv2.imwrite(str(root / f"{chr(97 + k)}.png"), photo(72 + 8 * k, 96, seed=k))
    return root


def write_bomb(path: Path, side: int = 11000) -> Path:
    """A grayscale PNG that claims side x side pixels in a few hundred KB (a decompression bomb)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    compressor = zlib.compressobj(9)
    row = b"\x00" * (side + 1)
    body = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


@pytest.fixture()
def in_tmp_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The case runs in its own empty folder (no lowsim.toml defaults, nothing written to the checkout) with the
    default pixel cap (the lowsim files use it for every case: pytestmark)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOWSIM_MAX_PIXELS", "")  # the default; restored after the case


@pytest.fixture(scope="session")
def params_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_params(tmp_path_factory.mktemp("params") / "p.json")


@pytest.fixture(scope="session")
def good_run(tmp_path_factory: pytest.TempPathFactory, params_file: Path) -> dict[str, Path]:
    """One finished 6-sample dataset (read-only by convention: copy it to modify it)."""
    base = tmp_path_factory.mktemp("good")
    src = write_sources(base / "src")
    out, manifest = base / "out", base / "m.parquet"
    result = invoke("generate", "--src", src, "--n", "6", "--size", "48", "--params", params_file, "--out", out,
                    "--manifest", manifest, "--no-progress")
    assert result.code == 0, result.stderr
    return {"base": base, "src": src, "out": out, "manifest": manifest, "params": params_file}


@pytest.fixture(scope="session")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An 11000 x 11000 PNG bomb (121 MP, over the 100 MP default), made once: compressing it takes a second."""
    return write_bomb(tmp_path_factory.mktemp("bomb") / "bomb.png")
