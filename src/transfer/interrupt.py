"""Ctrl-C during training: where abandoning the work changes nothing that is saved (fetching a batch, forward and
backward, before the optimizer step) the first SIGINT raises KeyboardInterrupt at once; elsewhere (the optimizer
step, saving a checkpoint) it only sets a flag that the loop checks between steps and validation images. Either
way the run saves `last` at its last finished step and stops within a fraction of a second; a second SIGINT raises
at once. Loader workers ignore SIGINT: the main process decides when to stop, and a worker killed by the
terminal's Ctrl-C would otherwise make the loader wait seconds before reporting it."""
from __future__ import annotations

import contextlib
import signal
import threading
from types import FrameType, TracebackType
from typing import Iterator


class StopRequest:
    """A context that turns the first SIGINT into `requested = True` (main thread only; elsewhere a no-op)."""

    def __init__(self) -> None:
        self.requested = False
        self._abortable = False
        self._previous: object = None
        self._installed = False

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
            self._installed = True
        return self

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        """Ctrl-C: stop now inside an abortable section or on the second one, else ask the loop to stop."""
        stop_now = self.requested or self._abortable
        self.requested = True
        if stop_now:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def abortable(self, enabled: bool = True) -> Iterator[None]:
        """A section whose work may be abandoned (it changes no saved state): Ctrl-C in it raises at once."""
        if not (enabled and self._installed):
            yield
            return
        if self.requested:
            raise KeyboardInterrupt
        self._abortable = True
        try:
            yield
        finally:
            self._abortable = False

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)  # type: ignore[arg-type]
            self._installed = False


def ignore_sigint(worker_id: int) -> None:
    """DataLoader worker_init_fn: leave Ctrl-C to the main process, which stops the workers itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
