"""Python's cyclic garbage collector paused while a full evaluation runs.

A full evaluation (a list or rule changed, `vigatra rules evaluate`) reads and judges millions of rows in
batches of employees, keeping one batch's rows alive at a time. Each batch allocates hundreds of
thousands of small objects that all live until the batch ends, so the collector's automatic passes run
again and again over a growing heap and find nothing to free: measured, they were ~40 % of the CPU of a
full evaluation. The rows are freed by reference counting when a batch ends whatever the collector does;
paused, it only defers the (rare) cyclic garbage of those minutes to its next pass.

Process-wide by nature (the collector is one per interpreter): a count of the evaluations running keeps
it paused until the last one ends, and it is resumed only if it was running when the first began.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator


class _Pause:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._resume = False

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        with self._lock:
            if self._holders == 0:
                self._resume = gc.isenabled()
                gc.disable()
            self._holders += 1
        try:
            yield
        finally:
            with self._lock:
                self._holders -= 1
                if self._holders == 0 and self._resume:
                    gc.enable()


_PAUSE = _Pause()


def collector_paused() -> contextlib.AbstractContextManager[None]:
    """Pause the cyclic garbage collector for the duration of the block (nested and concurrent uses count)."""
    return _PAUSE.held()
