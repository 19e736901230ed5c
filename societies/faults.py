"""Fault points: named moments where a test may kill, fill the disk or pause the process.

The generation loop calls :func:`point` at the moments a crash is interesting (after a
round is appended, between the halves of a transcript write, before an atomic rename,
after a training step, ...). Normally that is one dictionary lookup and nothing else.
The fault-injection driver (:mod:`trainer.fault_injection`) arms them through the
environment of the process it starts:

``FOLKWAYS_FAULTS=kill@N`` or ``kill@NAME``
    at the N-th point this process passes, or at the point called NAME, SIGKILL
    itself (a real, uncatchable kill: no ``finally`` runs, no buffer is flushed);
``FOLKWAYS_FAULTS=enospc@N`` or ``enospc@NAME``
    from that point on, raise ``OSError(ENOSPC)`` at every write point, as a full
    disk would;
``FOLKWAYS_FAULTS=pause@N`` or ``pause@NAME``
    at that point, print ``fault point NAME: paused`` to stderr and wait for a signal
    whose handler ends the process (a scheduler's preemption signal, say); a signal
    whose handler returns leaves it waiting. It pauses once, at the point that fires:
    a test signals a job at a known moment instead of racing the job's progress;
``FOLKWAYS_FAULT_TRACE=FILE``
    append the name of every point passed to FILE (unbuffered, so the line survives
    the kill), which tells the driver where each kill landed.

Point names say what is happening and where ("write:generation_000/summary.json",
"distill: generation_001/adapters/agent_02 step 3"), so that within one run each
names one moment: a resumed process reaches the same named moment as the
uninterrupted run did. The environment is read on the first call, not at import
(importing has no effects).
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from dataclasses import dataclass

FAULTS_ENV = "FOLKWAYS_FAULTS"
TRACE_ENV = "FOLKWAYS_FAULT_TRACE"
ACTIONS = ("kill", "enospc", "pause")


class FaultSpecError(ValueError):
    """``FOLKWAYS_FAULTS`` is malformed."""


@dataclass
class _Armed:
    action: str | None  # "kill", "enospc", "pause" or None (trace only)
    at: int | str  # 1-based index, or name, of the point that fires
    trace: str | None
    passed: int = 0
    fired: bool = False
    paused: bool = False


_state: _Armed | None = None
_checked = False


def _parse(spec: str) -> tuple[str, int | str]:
    action, _, where = spec.partition("@")
    if action not in ACTIONS or not where or where == "0":
        raise FaultSpecError(
            f"{FAULTS_ENV}={spec!r}; accepted: 'ACTION@N' or 'ACTION@NAME' with ACTION one "
            f"of {', '.join(ACTIONS)} (N >= 1: the N-th fault point passed; NAME: a point's "
            "name)"
        )
    return action, int(where) if where.isdigit() else where


def _armed() -> _Armed | None:
    global _state, _checked
    if not _checked:
        _checked = True
        spec, trace = os.environ.get(FAULTS_ENV, ""), os.environ.get(TRACE_ENV) or None
        if spec or trace:
            action, at = _parse(spec) if spec else (None, 0)
            _state = _Armed(action, at, trace)
    return _state


def armed() -> bool:
    """Whether fault injection is on in this process (tracing or a fault to fire)."""
    return _armed() is not None


def reset() -> None:
    """Forget the parsed environment and the count (tests arm and disarm in-process)."""
    global _state, _checked
    _state, _checked = None, False


def point(name: str, *, write: bool = False) -> None:
    """A moment where a fault may be injected.

    Args:
        name: where we are, e.g. ``"rollout.round"`` or ``"write:summary.json"``.
        write: the caller is about to write to disk (an ``enospc`` fault applies).
    Raises:
        OSError: ENOSPC, when an ``enospc`` fault is armed and due at a write point.
    """
    state = _armed()
    if state is None:
        return
    state.passed += 1
    if state.trace:
        fd = os.open(state.trace, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (name + "\n").encode())
        finally:
            os.close(fd)
    state.fired = state.fired or state.at in (state.passed, name)
    if state.action == "kill" and state.fired:
        os.kill(os.getpid(), signal.SIGKILL)
    if state.action == "pause" and state.fired and not state.paused:
        state.paused = True
        print(f"fault point {name}: paused", file=sys.stderr, flush=True)
        while True:  # a handler that raises (SystemExit, say) ends the wait
            signal.pause()
    if state.action == "enospc" and write and state.fired:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC) + f" (injected at {name})")


def short(path, parts: int) -> str:
    """The last ``parts`` components of ``path``: a point name that says where."""
    return "/".join(os.fspath(path).replace(os.sep, "/").split("/")[-parts:])
