"""A real one-node Slurm cluster (munge, slurmctld, slurmd) for the Slurm tests.

Installed with apt when missing (these test machines are Debian and run as root; the
configuration was verified on such a machine). Everything the cluster writes lives in a
private folder: its own ``slurm.conf`` (clients find it through ``SLURM_CONF``), ports
that are not Slurm's defaults, state and logs. All traffic stays on 127.0.0.1. A munge
daemon already running is reused; one we start is stopped with the cluster.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = ["slurm-wlm", "munge"]
BINARIES = ["slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "munged"]


def install() -> str | None:
    """Install Slurm and munge when missing; the reason they cannot be, else None."""
    if all(shutil.which(b) or Path("/usr/sbin", b).exists() for b in BINARIES):
        return None
    if os.geteuid() != 0:
        return "Slurm is not installed and installing it with apt-get needs root"
    if not shutil.which("apt-get"):
        return "Slurm is not installed and this machine has no apt-get"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *PACKAGES]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            return f"`{' '.join(command)}` failed: {done.stderr.strip()[-500:]}"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sbin(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


class Cluster:
    """``start()`` a one-node cluster with 2 CPUs in ``root``; ``stop()`` it."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.host = socket.gethostname().split(".")[0]
        self.conf = self.root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self._munged: subprocess.Popen | None = None

    def write_conf(self) -> None:
        for sub in ("state", "spool", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        ctld, slurmd = _free_port(), _free_port()
        self.conf.write_text(
            f"""ClusterName=folkwaystest
SlurmctldHost={self.host}(127.0.0.1)
SlurmctldPort={ctld}
SlurmdPort={slurmd}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# A requeued job waits cred_expire + 1 s before it may start again (slurm.conf(5),
# AuthInfo; default 120 s): 10 s keeps the requeue test short.
AuthInfo=cred_expire=10
StateSaveLocation={self.root}/state
SlurmdSpoolDir={self.root}/spool
SlurmctldPidFile={self.root}/slurmctld.pid
SlurmdPidFile={self.root}/slurmd.pid
SlurmctldLogFile={self.root}/log/slurmctld.log
SlurmdLogFile={self.root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
JobRequeue=1
MinJobAge=600
SchedulerType=sched/backfill
NodeName={self.host} NodeAddr=127.0.0.1 CPUs=2 RealMemory=16000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
        )

    def _munge_works(self) -> bool:
        try:
            encoded = subprocess.run(["munge", "-n"], capture_output=True, timeout=10)
            if encoded.returncode != 0:
                return False
            decoded = subprocess.run(["unmunge"], input=encoded.stdout, capture_output=True)
            return decoded.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    def start(self) -> None:
        self.write_conf()
        if not self._munge_works():
            key = Path("/etc/munge/munge.key")
            if not key.exists():
                subprocess.run(["mungekey", "--create"], check=True)
            shutil.chown(key, "munge", "munge")
            key.chmod(0o400)
            Path("/run/munge").mkdir(exist_ok=True)
            shutil.chown("/run/munge", "munge", "munge")
            self._munged = subprocess.Popen(
                ["runuser", "-u", "munge", "--", _sbin("munged"), "--foreground"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self._wait(self._munge_works, 20, "munged did not start")
        subprocess.run([_sbin("slurmctld"), "-f", str(self.conf), "-i"], env=self.env, check=True)
        subprocess.run([_sbin("slurmd"), "-f", str(self.conf)], env=self.env, check=True)
        self._wait(self._node_idle, 60, "the Slurm node did not come up idle")

    def _node_idle(self) -> bool:
        done = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], env=self.env, capture_output=True, text=True
        )
        return done.returncode == 0 and done.stdout.strip() == "idle"

    def node_address(self) -> str:
        done = subprocess.run(
            ["scontrol", "show", "node", self.host],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return next(w.split("=", 1)[1] for w in done.stdout.split() if w.startswith("NodeAddr="))

    def _wait(self, ok, seconds: float, message: str) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if ok():
                return
            time.sleep(0.5)
        logs = "\n".join(p.read_text()[-2000:] for p in sorted((self.root / "log").glob("*.log")))
        raise RuntimeError(f"{message}; logs:\n{logs}")

    def stop(self) -> None:
        subprocess.run(["scontrol", "shutdown"], env=self.env, capture_output=True, timeout=60)
        for pid_file in ("slurmctld.pid", "slurmd.pid"):
            path = self.root / pid_file
            end = time.monotonic() + 20
            while path.exists() and time.monotonic() < end:
                try:
                    os.kill(int(path.read_text().strip() or 0), 0)
                except (ValueError, ProcessLookupError):
                    break
                time.sleep(0.3)
        if self._munged is not None:
            self._munged.terminate()
            self._munged.wait(timeout=20)
