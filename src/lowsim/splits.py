"""Deterministic train/val/test assignment by a stable hash of a name (never by list order)."""
from __future__ import annotations

import hashlib
from typing import Mapping

DEFAULT_FRACTIONS: Mapping[str, float] = {"train": 0.9, "val": 0.05, "test": 0.05}


def hash_unit(name: str, salt: str = "") -> float:
    """Map a string to a number in [0, 1) by sha256; the same on every machine and Python."""
    digest = hashlib.sha256(f"{salt}{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_split(name: str, fractions: Mapping[str, float] = DEFAULT_FRACTIONS, salt: str = "") -> str:
    """Return the split whose cumulative-fraction interval holds `hash_unit(name)`."""
    total = sum(fractions.values())
    if total <= 0 or any(f < 0 for f in fractions.values()):
        raise ValueError(f"split fractions must be non-negative and sum > 0, got {dict(fractions)}")
    u = hash_unit(name, salt) * total
    acc = 0.0
    for split, frac in fractions.items():
        acc += frac
        if u < acc:
            return split
    return list(fractions)[-1]


# The real-pair split used for the shipped lowsim/data/params/lol.json and the Table 1 experiment: the
# validation part is never calibrated, trained or tuned on.
REAL_PAIR_FRACTIONS: Mapping[str, float] = {"pool": 0.8, "val": 0.2}
