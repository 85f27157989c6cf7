"""Worker processes that die with their parent: the audit export and verification spawn processes to
render or check ranges of the trail, and none may outlive the command that started them.

A parent that is killed (SIGKILL, the OOM killer, a SIGTERM without a handler) runs no cleanup, and a
spawned worker blocked writing its result into a pipe nobody reads would wait for ever: an interrupted
export once left three workers running nine minutes later. On Linux the kernel ends a worker when its
parent dies (``prctl(PR_SET_PDEATHSIG, SIGKILL)``, called through ctypes: the Python wrappers of prctl
on PyPI are unmaintained, and the call is one line); elsewhere a watchdog thread in the worker checks
its parent once a second. Both also catch a parent that died before the worker got this far.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent_pid: int) -> None:
    """Call first thing in a worker process started by ``parent_pid``."""
    if os.getpid() == parent_pid:  # run in the parent itself (an in-process stand-in for a pool): nothing to do
        return
    if not _kernel_kills_us_with_parent():
        threading.Thread(target=_watch_parent, args=(parent_pid,), name="parent-watch", daemon=True).start()
    if os.getppid() != parent_pid:  # the parent died before the request above took effect
        os._exit(1)


def _kernel_kills_us_with_parent() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)) == 0
    return False


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os._exit(1)
