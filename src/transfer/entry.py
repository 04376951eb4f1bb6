"""The `transfer` console script: without torch (`pip install lowsim`, no `[train]` extra) it says how to get
it, in one line, instead of an ImportError traceback; `transfer --version` works either way."""
from __future__ import annotations

import sys


def main() -> None:
    if "--version" in sys.argv[1:2]:
        from lowsim import __version__

        print(f"transfer (lowsim) {__version__}")
        return
    try:
        import torch  # noqa: F401  (imported here only to check that it is installed)
    except ModuleNotFoundError:
        print("error: `transfer` needs torch; install it with: pip install 'lowsim[train]'", file=sys.stderr)
        sys.exit(1)
    from transfer.cli import main as run

    run()
