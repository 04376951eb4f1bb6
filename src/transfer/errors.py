"""transfer's user-facing error: a LowsimError, so both CLIs print it the same way (one line, exit 2)."""
from __future__ import annotations

from lowsim.errors import LowsimError


class TransferError(LowsimError):
    """A user mistake in training, evaluation or inference: bad checkpoint, data, or option. Never a bug."""


class TrainingDiverged(TransferError):
    """The loss became NaN or infinite; training stopped without overwriting the last good checkpoint."""

    exit_code = 3
