"""Shared fixtures. Real data is read from ../shared/data (or $LOWSIM_DATA), never copied in."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _data_root() -> Path:
    return Path(os.environ.get("LOWSIM_DATA", REPO_ROOT.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-data folder (lol-dev/, clean/). Required under CI=true, skipped otherwise."""
    root = _data_root()
    if not (root / "lol-dev").is_dir() or not (root / "clean").is_dir():
        message = (f"real data not found at {root} (expected lol-dev/ and clean/); "
                   "set LOWSIM_DATA to the shared data folder")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return root


@pytest.fixture(scope="session")
def lol_dev(shared_data: Path) -> Path:
    return shared_data / "lol-dev"


@pytest.fixture(scope="session")
def clean_dir(shared_data: Path) -> Path:
    return shared_data / "clean"
