"""lowsim: calibrated low-light image simulation.

The Python API (lowsim.api) mirrors the command line: `lowsim.calibrate(pairs)`, `lowsim.generate(src, n)`,
`lowsim.load_params(path).sample(n, seed)`, `lowsim.degrade(image, params, seed)`. Everything is imported on
first use, so `import lowsim` stays cheap (and never imports torch).
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["Params", "__version__", "calibrate", "degrade", "generate", "load_params"]

_MODULE_ENTRY_POINTS = ("calibrate", "generate", "degrade")  # callable modules (see lowsim.api)


def __getattr__(name: str) -> Any:
    if name in _MODULE_ENTRY_POINTS:
        return importlib.import_module(f"lowsim.{name}")
    if name in ("load_params", "Params"):
        return getattr(importlib.import_module("lowsim.api"), name)
    raise AttributeError(f"module 'lowsim' has no attribute {name!r}")
