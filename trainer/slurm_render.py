"""``folkways slurm render CONFIG``: the pipeline as plain sbatch scripts (a dry run).

For users who submit by hand or need multi-node training: one script per stage from
the template ``slurm/step.sbatch``, written to ``<run_dir>/slurm/scripts/``, and
``submit.sh`` beside them with the ``sbatch`` commands that chain them (the same chain
:mod:`trainer.slurm_pipeline` submits through submitit). Nothing is submitted.

Rendering again into the same folder leaves only the new render's scripts: the folder's
``rendered.json`` lists the files the last render wrote, and those the new one does not
write (a previous render's later generations, say) are removed. Files it does not list
are never removed (``--out`` may be a folder of the user's); stray ``.sbatch`` files
among them are named in the result, so that they are not mistaken for this render's.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from societies.atomic import atomic_write_json
from trainer.out_dirs import check_out_dir
from trainer.slurm_config import Launcher, SlurmConfig, SlurmResources
from trainer.slurm_launchers import MASTER_PORT_SHELL, launcher_prefix
from trainer.slurm_pipeline import Stage, remaining_stages, step_argv

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


# The record of what a render wrote into its folder (file names, no paths).
MANIFEST = "rendered.json"


@dataclass(frozen=True)
class Rendered:
    """What :func:`render_pipeline` did in its folder."""

    folder: Path
    scripts: list[Path]
    """One sbatch script per remaining stage, in order (none for a complete run)."""
    commands: list[str]
    """The sbatch commands of submit.sh, in order."""
    removed: list[str]
    """Files of the folder's previous render that this one does not write."""
    foreign: list[str]
    """``.sbatch`` files in the folder that this render did not write (left as they are)."""


def _recorded(out: Path) -> list[str]:
    """The file names the last render into ``out`` recorded (none without a record)."""
    path = out / MANIFEST
    if not path.is_file():
        return []
    try:
        names = json.loads(path.read_text())["files"]
    except (ValueError, KeyError, TypeError):
        names = None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(
            f"{path} is not the record `folkways slurm render` writes (expected "
            '{"files": [file names]}); remove it (and, by hand, any earlier render\'s '
            "scripts beside it), then render again"
        )
    # Plain names only: a record edited to name ../something removes nothing outside.
    return [n for n in names if n and Path(n).name == n and n != MANIFEST]


def _record(out: Path, names: list[str]) -> None:
    atomic_write_json(out / MANIFEST, {"written_by": "folkways slurm render", "files": names})


def render_pipeline(exp, out_dir: Path | None = None) -> Rendered:
    """Write one sbatch script per remaining stage and ``submit.sh``, and remove the files
    of the folder's previous render that this one does not write (see the module's
    docstring). A complete run has no scripts: nothing is written, and a previous render's
    files are removed.

    Raises:
        ValueError: ``out_dir`` is an existing file (nothing is written); the folder's
            ``rendered.json`` is not a render's record.
    """
    if out_dir is not None:
        check_out_dir(
            Path(out_dir),
            "expected a folder for the sbatch scripts (existing or new; default "
            "RUN_DIR/slurm/scripts)",
        )
    exp.prepare()
    root = exp.layout.root.resolve()
    out = Path(out_dir) if out_dir else root / "slurm" / "scripts"
    before = _recorded(out)
    stages = remaining_stages(exp)
    names = [f"{stage.name}.sbatch" for stage in stages] + (["submit.sh"] if stages else [])
    stale = [n for n in before if n not in names]
    if stages:
        out.mkdir(parents=True, exist_ok=True)
        # Recorded before anything is written: an interrupted render leaves no file that
        # the next one would not know to remove.
        _record(out, sorted({*before, *names}))
    scripts, commands = _write_scripts(exp, root, out, stages)
    for name in stale:
        (out / name).unlink(missing_ok=True)
    if names:
        _record(out, names)
    elif before:
        (out / MANIFEST).unlink()  # a complete run: nothing of a render is left
    foreign = [p.name for p in out.glob("*.sbatch") if p.name not in names] if out.is_dir() else []
    return Rendered(out, scripts, commands, stale, sorted(foreign))


def _write_scripts(exp, root: Path, out: Path, stages: list[Stage]) -> tuple[list[Path], list[str]]:
    """Write the stages' scripts and submit.sh into ``out``; the scripts and commands."""
    if not stages:
        return [], []  # a complete run: no scripts and no submit.sh to run
    cfg = exp.config.slurm
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
