"""Talking to ``sbatch`` for ``folkways slurm submit`` and ``folkways sweep --slurm``:
whether a controller answers, and sbatch's refusals as one-line errors.

A login node without a cluster configuration (no ``SLURM_CONF``, no
``/etc/slurm/slurm.conf``) or with its controller down makes every Slurm client fail.
:func:`check_slurm_conf` refuses a ``SLURM_CONF`` that names no readable file at once
(Slurm's clients retry reading it for ~60 s before they fail). :func:`check_controller`
asks ``scontrol ping`` before anything is written, so such a command leaves no run
directory behind. :func:`slurm_executor` is submitit's executor whose failed ``sbatch``
(the controller, or a refused partition, account or limit) raises :class:`SbatchError`
quoting sbatch, after removing the pickles and submission script submitit had written
for that job. A failed ``squeue`` is :class:`QueueUnknown` (never "nothing queued").
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
from pathlib import Path

# What libslurm says when it has no configuration or no controller answers (sbatch,
# scontrol and sinfo alike; Slurm 22.05).
UNREACHABLE = (
    "Could not establish a configuration source",
    "Unable to contact slurm controller",
    "Unable to process configuration file",
    "is DOWN",
)
# What squeue says (exit 1) when asked about one job id the controller no longer knows:
# a finished job is forgotten MinJobAge after it ends (slurm.conf(5); Slurm 22.05).
INVALID_JOB_ID = "Invalid job id specified"
# Where Slurm's clients look without SLURM_CONF (slurm.conf(5); Debian's packages).
DEFAULT_CONF = "/etc/slurm/slurm.conf"


class SbatchError(ValueError):
    """sbatch could not submit (a ValueError: the CLI's one-line error, exit 2)."""


class QueueUnknown(ValueError):
    """``squeue`` failed, so which jobs are queued is unknown: never "nothing queued".

    Attributes:
        said: squeue's message (its ``output``) on one line.
    """

    def __init__(self, output: str):
        self.said = said = _said(output)
        super().__init__(
            f"the Slurm queue is unknown: `squeue` failed and says: {said}; {_where_to_look()}"
        )


def _said(output: str) -> str:
    """A Slurm client's message on one line, without scontrol's banner."""
    lines = [line.strip() for line in output.splitlines()]
    kept = [line for line in lines if line and not line.startswith("**")]
    return " / ".join(kept) or "(nothing)"


def _where_to_look() -> str:
    conf = os.environ.get("SLURM_CONF")
    if conf:
        shown = f"SLURM_CONF={conf}"  # an existing file: check_slurm_conf
    else:
        missing = "" if Path(DEFAULT_CONF).is_file() else ", which does not exist"
        shown = f"SLURM_CONF is unset, so {DEFAULT_CONF}{missing}"
    return (
        f"check the cluster configuration ({shown}) and that `sinfo` lists the cluster's "
        "partitions from this machine, then run the same command again"
    )


def check_slurm_conf(env: dict | None = None) -> None:
    """Raise if ``SLURM_CONF`` (in ``env``, default ``os.environ``) names no readable file.

    Slurm's clients (sbatch, squeue, scontrol) retry reading a missing configuration for
    ~60 s before they fail, so a mistyped ``SLURM_CONF`` is caught here, at once. An unset
    ``SLURM_CONF`` is left to Slurm: without ``/etc/slurm/slurm.conf`` a configless
    cluster still finds its controller (slurm.conf(5), "configless").

    Raises:
        FileNotFoundError: naming the file.
    """
    conf = (os.environ if env is None else env).get("SLURM_CONF")
    if not conf:
        return
    path = Path(conf)
    if path.is_file() and os.access(path, os.R_OK):
        return
    if path.is_file():
        what = "cannot be read"
    else:
        what = "is a folder" if path.is_dir() else "does not exist"
    raise FileNotFoundError(
        f"SLURM_CONF={conf}, which {what}: Slurm's clients would retry reading it for a minute "
        f"and fail; set SLURM_CONF to the cluster's slurm.conf (or unset it to use "
        f"{DEFAULT_CONF}), then run the same command again"
    )


def check_controller() -> None:
    """Raise unless ``sbatch`` is on PATH and a Slurm controller answers ``scontrol ping``.

    Raises:
        FileNotFoundError: no ``sbatch`` on PATH; ``SLURM_CONF`` names no readable file.
        SbatchError: no controller answers (the message quotes Slurm's).
    """
    if not shutil.which("sbatch"):
        raise FileNotFoundError(
            "sbatch is not on PATH: submit from a login node of the Slurm cluster (or load "
            "its Slurm module first)"
        )
    check_slurm_conf()
    if not shutil.which("scontrol"):
        return  # sbatch itself then says what is wrong (SbatchError below)
    try:
        # A configuration file that cannot be read is retried for 60 s by libslurm.
        done = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=90)
    except subprocess.TimeoutExpired:
        raise SbatchError(
            f"no Slurm controller answered `scontrol ping` in 90 s, so sbatch cannot submit; "
            f"{_where_to_look()}"
        ) from None
    if done.returncode != 0:
        raise SbatchError(
            "no Slurm controller answers, so sbatch cannot submit: `scontrol ping` says: "
            f"{_said(done.stderr + done.stdout)}; {_where_to_look()}"
        )


def sbatch_error(stderr: str, what: str) -> SbatchError:
    """sbatch's failure to submit ``what`` as one line: sbatch's words and what to check."""
    said = _said(stderr)
    if any(marker in stderr for marker in UNREACHABLE):
        return SbatchError(
            f"sbatch could not reach a Slurm controller to submit {what}: sbatch says: "
            f"{said}; {_where_to_look()}"
        )
    return SbatchError(
        f"sbatch refused {what}: sbatch says: {said}; check the slurm: keys it names "
        "(partition, account, qos, gpus, cpus, mem_gb, time_min, nodes) against the "
        "cluster's (`sinfo`), then run the same command again"
    )


def slurm_executor(folder: Path, max_requeues: int, what: str = "the job"):
    """submitit's ``SlurmExecutor`` whose failed sbatch raises :class:`SbatchError` (about
    ``what``; change it with ``executor.what = ...``) and leaves none of the files
    submitit wrote for that submission."""
    import submitit
    from submitit.core.utils import FailedJobError, JobPaths

    class Executor(submitit.SlurmExecutor):
        def _internal_process_submissions(self, delayed_submissions):
            # submitit writes each job's pickle and its sbatch script into the folder
            # above the job's own (%j) folder, and moves them there only once sbatch
            # returned a job id: a failure leaves them behind.
            staging = JobPaths.get_first_id_independent_folder(self.folder)
            before = set(staging.iterdir()) if staging.is_dir() else set()
            # submitit also prints sbatch's stderr itself; the error below quotes it.
            with contextlib.redirect_stderr(io.StringIO()):
                try:
                    return super()._internal_process_submissions(delayed_submissions)
                except FailedJobError as err:
                    failure = err
            left = set(staging.iterdir()) - before if staging.is_dir() else set()
            for path in left:
                if path.suffix == ".pkl" or path.name.startswith(".submission_file_"):
                    path.unlink(missing_ok=True)
            raise sbatch_error(str(failure), self.what) from None

    executor = Executor(folder=folder, max_num_timeout=max_requeues)
    executor.what = what
    return executor
