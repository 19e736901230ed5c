"""``folkways slurm render CONFIG``: the pipeline as plain sbatch scripts (a dry run).

For users who submit by hand or need multi-node training: one script per stage from
the template ``slurm/step.sbatch``, written to ``<run_dir>/slurm/scripts/``, and
``submit.sh`` beside them with the ``sbatch`` commands that chain them (the same chain
:mod:`trainer.slurm_pipeline` submits through submitit). Nothing is submitted.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from trainer.out_dirs import check_out_dir
from trainer.slurm_config import Launcher, SlurmConfig, SlurmResources
from trainer.slurm_pipeline import (
    MASTER_PORT_SHELL,
    Stage,
    launcher_prefix,
    remaining_stages,
    step_argv,
)

TEMPLATE = Path(__file__).parents[1] / "slurm" / "step.sbatch"


def fill(template: str, values: dict[str, str]) -> str:
    """Replace every ``{{name}}``; an unknown name is an error, not an empty string."""

    def value(match: re.Match) -> str:
        name = match.group(1)
        if name not in values:
            raise KeyError(f"template placeholder {{{{{name}}}}} has no value")
        return values[name]

    return re.sub(r"\{\{(\w+)\}\}", value, template)


def resource_lines(res: SlurmResources, cfg: SlurmConfig, stage: Stage) -> list[str]:
    lines = [
        f"#SBATCH --cpus-per-task={res.cpus}",
        f"#SBATCH --time={res.time_min}",
        f"#SBATCH --nodes={res.nodes}",
        "#SBATCH --ntasks-per-node=1",
    ]
    if res.partition:
        lines.append(f"#SBATCH --partition={res.partition}")
    if res.gpus:
        lines.append(f"#SBATCH --gres=gpu:{res.gpus}")
    if res.mem_gb:
        lines.append(f"#SBATCH --mem={res.mem_gb}G")
    if cfg.account:
        lines.append(f"#SBATCH --account={cfg.account}")
    if cfg.qos:
        lines.append(f"#SBATCH --qos={cfg.qos}")
    if stage.step == "distill":
        tasks = ",".join(map(str, stage.tasks))
        lines.append(f"#SBATCH --array={tasks}%{cfg.max_parallel_tasks}")
    return lines


def stage_command(run_dir: Path, stage: Stage, cfg: SlurmConfig) -> str:
    """The shell command of one stage; an array task reads its group from Slurm."""
    task = "$SLURM_ARRAY_TASK_ID" if stage.step == "distill" else None
    argv = step_argv(str(run_dir), stage, task)
    if stage.step != "distill" or cfg.launcher is Launcher.NONE:
        return " ".join(a if a.startswith("$") else shlex.quote(a) for a in argv)
    # Multi-process distillation: the launcher replaces `python`; each node's srun task
    # expands $SLURM_NODEID itself (single-quoted here, so the batch script does not).
    launcher = [a if "$" in a else shlex.quote(a) for a in launcher_prefix(cfg)]
    inner = " ".join([*launcher, "-m", *map(shlex.quote, argv[2:-4])])
    inner += f" --task $SLURM_ARRAY_TASK_ID --agents-per-task {stage.per_task}"
    if cfg.distill.nodes > 1:
        return f"srun --ntasks-per-node=1 bash -c {shlex.quote(inner)}"
    return inner


def render_pipeline(exp, out_dir: Path | None = None) -> tuple[list[Path], list[str]]:
    """Write one sbatch script per remaining stage and ``submit.sh``; return the script
    paths and the sbatch commands (in order). A complete run has none: nothing is written.

    Raises:
        ValueError: ``out_dir`` is an existing file (nothing is written).
    """
    if out_dir is not None:
        check_out_dir(
            Path(out_dir),
            "expected a folder for the sbatch scripts (existing or new; default "
            "RUN_DIR/slurm/scripts)",
        )
    exp.prepare()
    root = exp.layout.root.resolve()
    cfg = exp.config.slurm
    stages = remaining_stages(exp)
    if not stages:
        return [], []  # a complete run: no scripts and no submit.sh to run
    out = Path(out_dir) if out_dir else root / "slurm" / "scripts"
    out.mkdir(parents=True, exist_ok=True)
    log_dir = root / "slurm" / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    template = TEMPLATE.read_text()
    scripts, commands = [], []
    previous = None
    for stage in stages:
        res = getattr(cfg, stage.step)
        script = out / f"{stage.name}.sbatch"
        script.write_text(
            fill(
                template,
                {
                    "step": stage.step,
                    "generation": str(stage.generation),
                    "run_name": exp.config.run.name,
                    "job_name": f"fw-{exp.config.run.name}-{stage.name}",
                    "log_dir": str(log_dir),
                    "output_pattern": "%x-%A_%a.out" if stage.step == "distill" else "%x-%j.out",
                    "resources": "\n".join(resource_lines(res, cfg, stage)),
                    "setup": "\n".join(cfg.setup),
                    "workdir": str(Path.cwd()),
                    "master_port": MASTER_PORT_SHELL,
                    "command": stage_command(root, stage, cfg),
                },
            )
        )
        var = f"{stage.step}_{stage.generation}"
        dependency = f" --dependency=afterok:${previous}" if previous else ""
        commands.append(f"{var}=$(sbatch --parsable{dependency} {shlex.quote(str(script))})")
        scripts.append(script)
        previous = var
    submit = out / "submit.sh"
    submit.write_text(
        "#!/bin/bash\n# Submit the rendered pipeline (folkways slurm render).\nset -euo pipefail\n"
        + "\n".join(commands)
        + "\necho submitted: "
        + " ".join(f"${c.split('=')[0]}" for c in commands)
        + "\n"
    )
    submit.chmod(0o755)
    return scripts, commands
