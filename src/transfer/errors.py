"""transfer's user-facing errors: LowsimErrors, so both CLIs print them the same way (one line, non-zero exit)."""
from __future__ import annotations

from lowsim.errors import LowsimError


class TransferError(LowsimError):
    """A user mistake in training, evaluation or inference: bad checkpoint, data, or option. Never a bug."""


class TrainingDiverged(TransferError):
    """The loss became NaN or infinite; training stopped without overwriting the last good checkpoint."""

    exit_code = 3


class TransferRuntimeError(TransferError):
    """Not a bad option but the machine in the way: a refused write (disk full, permission denied) or another
    run holding the run directory."""

    exit_code = 1


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a training run; the message says what was saved and how to continue."""

