"""The ``slurm:`` config section: resources per step type for ``folkways slurm``.

A run's Slurm resources say where it runs, not what it computes: they may change
between submissions of the same run directory (a resume on another partition).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from trainer.config_loader import require


class Launcher(str, Enum):
    """How the distillation step's process is started."""

    NONE = "none"  # one process (the default; CPU or one GPU)
    TORCHRUN = "torchrun"  # torchrun --nproc_per_node=<gpus or cpus>
    ACCELERATE = "accelerate"  # accelerate launch --config_file <slurm.accelerate_config>


@dataclass(frozen=True)
class SlurmResources:
    """What one job of a step type asks the scheduler for."""

    partition: str | None = None
    """null: the cluster's default partition."""
    cpus: int = 2
    gpus: int = 0
    """GPUs per node (--gres=gpu:N)."""
    mem_gb: int | None = None
    """null: the partition's default memory."""
    time_min: int = 60
    """Wall-time limit; the job is requeued on it (and on preemption) and resumes."""
    nodes: int = 1
    """Nodes per job (distill with a launcher: one srun task per node)."""

    def check(self, key: str) -> None:
        require(self.cpus >= 1, f"{key}.cpus", self.cpus, "an integer >= 1")
        require(self.gpus >= 0, f"{key}.gpus", self.gpus, "an integer >= 0")
        require(
            self.mem_gb is None or self.mem_gb >= 1,
            f"{key}.mem_gb",
            self.mem_gb,
            "null or an integer >= 1 (GB)",
        )
        require(self.time_min >= 1, f"{key}.time_min", self.time_min, "an integer >= 1")
        require(self.nodes >= 1, f"{key}.nodes", self.nodes, "an integer >= 1")


@dataclass(frozen=True)
class SlurmConfig:
    rollout: SlurmResources = field(default_factory=lambda: SlurmResources(time_min=120))
    distill: SlurmResources = field(default_factory=SlurmResources)
    probe: SlurmResources = field(default_factory=SlurmResources)
    agents_per_task: int = 1
    """Agents one distillation array task trains (the array has ceil(N / this) tasks)."""
    max_parallel_tasks: int = 64
    """How many distillation tasks of an array may run at once (%N of --array)."""
    account: str | None = None
    qos: str | None = None
    launcher: Launcher = Launcher.NONE
    """Multi-process distillation (distill.backend=trl): torchrun or accelerate."""
    accelerate_config: str | None = None
    """launcher=accelerate: e.g. configs/accelerate/deepspeed_zero2.yaml."""
    setup: list[str] = field(default_factory=list)
    """Shell lines each job runs first (module load ..., source .venv/bin/activate)."""
    max_requeues: int = 3
    """Requeues after a time limit or preemption before a job gives up."""

    def __post_init__(self) -> None:
        for name in ("rollout", "distill", "probe"):
            getattr(self, name).check(f"slurm.{name}")
        require(
            self.agents_per_task >= 1,
            "slurm.agents_per_task",
            self.agents_per_task,
            "an integer >= 1",
        )
        require(
            self.max_parallel_tasks >= 1,
            "slurm.max_parallel_tasks",
            self.max_parallel_tasks,
            "an integer >= 1",
        )
        require(
            self.launcher is not Launcher.ACCELERATE or bool(self.accelerate_config),
            "slurm.accelerate_config",
            self.accelerate_config,
            "a path to an accelerate config (e.g. configs/accelerate/cpu_ddp.yaml) when "
            "slurm.launcher=accelerate",
        )
        require(self.max_requeues >= 0, "slurm.max_requeues", self.max_requeues, ">= 0")
