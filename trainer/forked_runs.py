"""Run ``folkways`` commands as processes forked from a server that has the libraries
imported, instead of as fresh interpreters.

A fresh ``python -m trainer.cli run`` spends ~9 s importing torch, transformers, PEFT,
datasets and TRL before any work (2-core AMD EPYC), and the fault-injection check
starts a dozen such processes for one run. Here a small server process imports them
once, then forks one child per command: a new process with its own environment,
working directory and ``argv``, its output appended to a log, killed by a real SIGKILL
like any other, and reaped by the server, which reports its exit code.

The server never runs a tensor operation, so a child starts with no OpenMP thread pool
to inherit (forking a process that has run one can hang the child: GNU libgomp is not
fork-safe), and :func:`serve` refuses to fork if importing started a Python thread. The
native threads importing starts (one of torch's, pyarrow's jemalloc background thread)
are simply absent in a child, as in any fork; a child's matmuls run on both cores at
full speed (checked on the 2-core AMD EPYC).

What a child does not share with a fresh interpreter: variables that libraries read
when imported (``OMP_NUM_THREADS``, ``HF_HUB_OFFLINE``, ...) have the values the server
started with; variables read at run time (``FOLKWAYS_*``, ``WANDB_*``) are the child's.
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import traceback
from pathlib import Path

# What ``folkways run`` imports; importing them in the server is the whole point.
PRELOAD = (
    "torch",
    "transformers",
    "peft",
    "datasets",
    "trl",
    "trainer.cli",
    "trainer.generation_loop",
    "trainer.distill_batched",
    "trainer.distill_sft",
    "trainer.evolve",  # the loop imports the model and weight code where it uses them
    "societies.population",
)

_server: subprocess.Popen | None = None


def run_forked(argv: list[str], env: dict[str, str], log: Path) -> int:
    """Run ``folkways ARGV`` in a process forked from the server; its exit code, as
    :attr:`subprocess.Popen.returncode` gives it (``-9`` for a SIGKILL).

    Args:
        argv: the command line after ``folkways`` (``["run", config, ...]``).
        env: the whole environment of the process.
        log: its stdout and stderr are appended here.
    """
    server = _started()
    request = {"argv": list(argv), "env": dict(env), "log": str(log), "cwd": os.getcwd()}
    server.stdin.write(json.dumps(request) + "\n")
    server.stdin.flush()
    reply = server.stdout.readline()
    if not reply:
        raise RuntimeError(f"the fork server died (exit {server.wait()}); see stderr above")
    return int(reply)


def _started() -> subprocess.Popen:
    global _server
    if _server is None or _server.poll() is not None:
        _server = subprocess.Popen(
            [sys.executable, "-c", "from trainer.forked_runs import serve; serve()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        if _server.stdout.readline() != "ready\n":
            raise RuntimeError(f"the fork server failed to start (exit {_server.wait()})")
    return _server


def serve() -> None:
    """The server: import :data:`PRELOAD`, then fork a child per request line read from
    stdin (JSON: argv, env, log, cwd) and write its exit code to stdout, one at a time.
    It ends when stdin closes, that is when the process that started it ends."""
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever importing prints goes to stderr, not into the replies
    for name in PRELOAD:
        importlib.import_module(name)
    if threading.active_count() != 1:
        raise RuntimeError(f"importing {PRELOAD} started threads {threading.enumerate()}")
    replies.write("ready\n")
    replies.flush()
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            replies.close()
            _become(**request)
        _, status = os.waitpid(pid, 0)
        replies.write(f"{os.waitstatus_to_exitcode(status)}\n")
        replies.flush()


def _become(argv: list[str], env: dict[str, str], log: str, cwd: str) -> None:
    """In the forked child: run ``folkways ARGV`` as a fresh process would, then exit."""
    os.environ.clear()
    os.environ.update(env)
    tempfile.tempdir = None  # the server's cached $TMPDIR; a fresh process reads the new one
    os.chdir(cwd)
    sys.argv = ["folkways", *argv]
    null = os.open(os.devnull, os.O_RDONLY)
    out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    for source, target in ((null, 0), (out, 1), (out, 2)):
        os.dup2(source, target)
    os.close(null)
    os.close(out)
    from trainer.cli import main

    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:  # as the interpreter would: the traceback, then exit code 1
        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()  # os._exit skips them; a process that returns from main runs them
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)
