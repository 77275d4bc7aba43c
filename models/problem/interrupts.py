"""Ctrl-C during a solve: one light module (no solver imports), so the command line can install it first.

With `interrupt_on_sigint` in force, SIGINT outside HiGHS raises
KeyboardInterrupt as usual. Inside a HiGHS run (`stoppable`), the main thread
is in HiGHS's C++ code and Python's own handler cannot run until HiGHS
returns, which can take minutes (HiGHS checks its interrupt callbacks nowhere
in a MIP's root LP). But HiGHS releases the GIL while it runs, and Python's
C-level handler writes every signal to a wakeup file descriptor at once: a
watcher thread reads it and sets the running HiGHS instances' time limit to 0,
which HiGHS checks in every phase. HiGHS returns within moments with status
time limit, and `stoppable` raises `Interrupted`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

RESTOP_SECONDS = 0.2  # how often the watcher stops again a run that started just after the signal


class Interrupted(Exception):
    """The user asked to stop (SIGINT) while HiGHS ran."""


class StopRequest:
    """SIGINT's state: whether a stop was asked for, how deep inside HiGHS runs the program is, and the
    HiGHS instances running now."""

    requested = False
    depth = 0
    running: list = []


def on_sigint(signum, frame) -> None:
    """Python's handler (main thread): inside HiGHS the watcher has stopped it; elsewhere KeyboardInterrupt."""
    StopRequest.requested = True
    if StopRequest.depth == 0:
        raise KeyboardInterrupt


def watch(read_fd: int) -> None:
    """The watcher thread: on SIGINT, stop every running HiGHS by setting its time limit to 0, and again
    while one runs (until the pipe is closed)."""
    while signals := os.read(read_fd, 16):
        if signal.SIGINT not in signals:
            continue
        StopRequest.requested = True
        while StopRequest.running:
            for highs in list(StopRequest.running):
                highs.setOptionValue("time_limit", 0.0)
            time.sleep(RESTOP_SECONDS)
    os.close(read_fd)


@contextlib.contextmanager
def interrupt_on_sigint():
    """While in force, SIGINT stops HiGHS runs (and raises KeyboardInterrupt elsewhere); restored after."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    previous = signal.signal(signal.SIGINT, on_sigint)
    StopRequest.requested = False
    threading.Thread(target=watch, args=(read_fd,), daemon=True).start()
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.set_wakeup_fd(previous_fd)
        os.close(write_fd)  # the watcher's read returns b'' and it ends


@contextlib.contextmanager
def stoppable(highs):
    """Around one HiGHS run: SIGINT stops it (see the module docstring); `Interrupted` after it returns."""
    StopRequest.depth += 1
    StopRequest.running.append(highs)
    try:
        yield
    finally:
        StopRequest.running.remove(highs)
        StopRequest.depth -= 1
    if StopRequest.requested:
        raise Interrupted("interrupted")
