"""`folkways slurm render` without a scheduler: what it writes, where, and what it says.

Fast (no Slurm needed); `tests/test_slurm.py` checks the rendered scripts with a real
``sbatch --test-only``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import QUICKSTART, tiny_overrides
from trainer.cli import main
from trainer.run_dir import RunLayout
from trainer.slurm_config import Launcher, SlurmConfig, SlurmResources
from trainer.slurm_launchers import launcher_prefix, master_port


def _render(tmp_path, *extra: str) -> int:
    return main(["slurm", "render", str(QUICKSTART), *tiny_overrides(tmp_path), *extra])


def test_out_an_existing_file_is_one_line_error_before_anything_is_written(
    tiny_model_path, tmp_path, capsys
):
    afile = tmp_path / "afile"
    afile.write_text("mine\n")
    for out, named in ((afile, f"--out {afile} is a file"), (afile / "sub", str(afile))):
        assert _render(tmp_path, "--out", str(out)) == 2
        err = capsys.readouterr().err
        assert err.startswith("folkways: error: --out ") and named in err
        assert "expected a folder" in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "t").exists()  # no run directory (config.yaml, graph.json)
    assert afile.read_text() == "mine\n"


def test_out_a_new_folder_holds_the_scripts_and_submit_sh(tiny_model_path, tmp_path, capsys):
    out = tmp_path / "new" / "scripts"
    assert _render(tmp_path, "--out", str(out)) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[-1] == f"# wrote 6 scripts to {out}; run them in order with {out}/submit.sh"
    assert len(sorted(out.glob("*.sbatch"))) == 6
    assert (out / "submit.sh").read_text().count("sbatch --parsable") == 6
    assert not (tmp_path / "t" / "slurm" / "scripts").exists()


def _complete(run_dir: Path, *generations: int) -> None:
    """Mark generations complete (render reads only the markers)."""
    layout = RunLayout(run_dir)
    for g in generations:
        layout.complete(g).parent.mkdir(parents=True, exist_ok=True)
        layout.complete(g).write_text("")


def test_a_complete_run_renders_nothing_and_says_so(tiny_model_path, tmp_path, capsys):
    assert _render(tmp_path) == 0  # writes the run directory
    run_dir = tmp_path / "t"
    _complete(run_dir, 0, 1)
    capsys.readouterr()
    out = tmp_path / "out"
    for extra in ([], ["--out", str(out)]):
        assert main(["slurm", "render", str(run_dir), *extra]) == 0
        printed = capsys.readouterr().out
        assert printed.endswith(
            f"# {run_dir} is complete; nothing to render (no scripts written)\n"
        )
    assert not out.exists()  # no empty submit.sh to run
    # The first render's scripts are gone from the default folder: none is left to run.
    assert list((run_dir / "slurm" / "scripts").iterdir()) == []
    # `submit` says the same, and submits nothing (no scheduler is asked).
    assert main(["slurm", "submit", str(run_dir), "--json"]) == 0
    assert f"{run_dir} is complete; nothing to submit" in capsys.readouterr().err


def test_a_partly_complete_run_renders_what_remains(tiny_model_path, tmp_path, capsys):
    assert _render(tmp_path) == 0
    run_dir = tmp_path / "t"
    _complete(run_dir, 0)
    capsys.readouterr()
    out = tmp_path / "rest"
    assert main(["slurm", "render", str(run_dir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[-1] == f"# wrote 3 scripts to {out}; run them in order with {out}/submit.sh"
    assert [line.split("=")[0] for line in printed[:-1]] == ["rollout_1", "distill_1", "probe_1"]
    assert "--dependency" not in printed[0] and "afterok:$distill_1" in printed[2]
    assert sorted(p.name for p in out.iterdir()) == [
        "g001-distill.sbatch",
        "g001-probe.sbatch",
        "g001-rollout.sbatch",
        "rendered.json",
        "submit.sh",
    ]


def test_rendering_again_leaves_only_the_new_renders_files(tiny_model_path, tmp_path, capsys):
    """A second render into the same folder, once generation 0 is complete, removes the
    first render's generation-0 scripts (submit.sh chains only generation 1's), and
    leaves the files it did not write."""
    out = tmp_path / "scripts"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    (out / "mine.sbatch").write_text("#!/bin/bash\n")
    assert _render(tmp_path, "--out", str(out)) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == f"# left in {out}, not written by this render: mine.sbatch"
    first = json.loads((out / "rendered.json").read_text())["files"]
    assert first == [
        *[f"g00{g}-{step}.sbatch" for g in (0, 1) for step in ("rollout", "distill", "probe")],
        "submit.sh",
    ]
    _complete(tmp_path / "t", 0)
    assert main(["slurm", "render", str(tmp_path / "t"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == (
        f"# removed from {out}, of its previous render: g000-rollout.sbatch "
        "g000-distill.sbatch g000-probe.sbatch"
    )
    assert printed[1] == f"# left in {out}, not written by this render: mine.sbatch"
    assert sorted(p.name for p in out.iterdir()) == [
        "g001-distill.sbatch",
        "g001-probe.sbatch",
        "g001-rollout.sbatch",
        "mine.sbatch",
        "notes.txt",
        "rendered.json",
        "submit.sh",
    ]
    assert "g000" not in (out / "submit.sh").read_text()
    assert json.loads((out / "rendered.json").read_text())["files"] == [
        "g001-rollout.sbatch",
        "g001-distill.sbatch",
        "g001-probe.sbatch",
        "submit.sh",
    ]
    assert (out / "notes.txt").read_text() == "mine\n"


def test_a_render_record_naming_other_files_removes_none_outside_the_folder(
    tiny_model_path, tmp_path, capsys
):
    out = tmp_path / "scripts"
    assert _render(tmp_path, "--out", str(out)) == 0
    outside = tmp_path / "keep.sbatch"
    outside.write_text("#!/bin/bash\n")
    (out / "rendered.json").write_text(json.dumps({"files": ["../keep.sbatch", "/etc/x"]}))
    assert _render(tmp_path, "--out", str(out)) == 0
    assert outside.exists()
    (out / "rendered.json").write_text("[1, 2]")  # not a render's record: refused
    capsys.readouterr()
    assert _render(tmp_path, "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"folkways: error: {out / 'rendered.json'} is not the record ")
    assert len(err.strip().splitlines()) == 1


DEEPSPEED = "configs/accelerate/deepspeed_zero2.yaml"
LAUNCHERS = {
    "torchrun": ["slurm.launcher=torchrun"],
    "accelerate": ["slurm.launcher=accelerate", f"slurm.accelerate_config={DEEPSPEED}"],
}


def _distill_command(tmp_path, launcher: str, nodes: int) -> str:
    """The command line of generation 0's rendered distillation script."""
    out = tmp_path / f"{launcher}-{nodes}"
    slurm = [*LAUNCHERS[launcher], f"slurm.distill.nodes={nodes}", "slurm.distill.gpus=8"]
    assert _render(tmp_path, *slurm, f"run.name={launcher}-{nodes}", "--out", str(out)) == 0
    lines = (out / "g000-distill.sbatch").read_text().splitlines()
    (command,) = [line for line in lines if line.endswith(" &")]  # the step, in background
    return command.removesuffix(" &")


STEP = "-m trainer.cli step distill"
TASK = "--task $SLURM_ARRAY_TASK_ID --agents-per-task 1"


def test_launchers_run_from_the_venv_python_as_every_other_step(tiny_model_path, tmp_path):
    # No `torchrun`/`accelerate` from PATH: the venv's python runs the launchers' modules.
    run = tmp_path / "torchrun-1"
    assert _distill_command(tmp_path, "torchrun", 1) == (
        f"{sys.executable} -m torch.distributed.run --nproc_per_node=8 --standalone "
        f"{STEP} {run} --generation 0 --no-progress {TASK}"
    )
    run = tmp_path / "accelerate-1"
    assert _distill_command(tmp_path, "accelerate", 1) == (
        f"{sys.executable} -m accelerate.commands.launch --config_file {DEEPSPEED} "
        f"--num_processes=8 --main_process_port=$MASTER_PORT "
        f"{STEP} {run} --generation 0 --no-progress {TASK}"
    )


def test_multi_node_launchers_rendezvous_on_the_jobs_own_port(tiny_model_path, tmp_path):
    # One srun task per node; the single quotes keep $SLURM_NODEID, $MASTER_ADDR,
    # $MASTER_PORT and $SLURM_JOB_ID for each node's bash to read.
    run = tmp_path / "torchrun-2"
    assert _distill_command(tmp_path, "torchrun", 2) == (
        f"srun --ntasks-per-node=1 bash -c '{sys.executable} -m torch.distributed.run "
        "--nproc_per_node=8 --nnodes=2 --node_rank=$SLURM_NODEID --rdzv_backend=c10d "
        "--rdzv_endpoint=$MASTER_ADDR:$MASTER_PORT --rdzv_id=$SLURM_JOB_ID "
        f"{STEP} {run} --generation 0 --no-progress {TASK}'"
    )
    run = tmp_path / "accelerate-2"
    assert _distill_command(tmp_path, "accelerate", 2) == (
        f"srun --ntasks-per-node=1 bash -c '{sys.executable} -m accelerate.commands.launch "
        f"--config_file {DEEPSPEED} --num_processes=16 --num_machines=2 "
        "--machine_rank=$SLURM_NODEID --main_process_ip=$MASTER_ADDR "
        "--main_process_port=$MASTER_PORT "
        f"{STEP} {run} --generation 0 --no-progress {TASK}'"
    )


def test_the_rendered_scripts_export_the_jobs_own_rendezvous_port(tiny_model_path, tmp_path):
    """Every script exports MASTER_PORT from its job id (before the command reads it):
    array tasks 41 and 42 (one array; each task is a job of its own) get ports 15041 and
    15042, not both 29500; bash's arithmetic is master_port's."""
    _distill_command(tmp_path, "accelerate", 1)
    text = (tmp_path / "accelerate-1" / "g000-distill.sbatch").read_text()
    (line,) = [x for x in text.splitlines() if x.startswith("export MASTER_PORT=")]
    assert line == "export MASTER_PORT=$((15000 + SLURM_JOB_ID % 10000))"
    assert text.index(line) < text.index("--main_process_port=$MASTER_PORT")
    for job_id in ("41", "42", "1234567", "10041"):
        env = {"PATH": os.environ["PATH"], "SLURM_JOB_ID": job_id}
        shown = subprocess.run(
            ["bash", "-c", f'{line}; echo "$MASTER_PORT"'], env=env, capture_output=True, text=True
        ).stdout
        assert int(shown) == master_port(job_id)
    # The id's last 4 digits: jobs 10000 apart share a port (only a clash on one node).
    assert [master_port(j) for j in (41, 42, 1234567, 10041)] == [15041, 15042, 19567, 15041]


def test_the_readme_shows_the_rendered_multi_node_flags():
    # The README's multi-node example is what render writes (its flags, in its order).
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for flags in (
        "--nnodes=2 --node_rank=$SLURM_NODEID --rdzv_backend=c10d",
        "--rdzv_endpoint=$MASTER_ADDR:$MASTER_PORT --rdzv_id=$SLURM_JOB_ID",
        "--machine_rank=$SLURM_NODEID --main_process_ip=$MASTER_ADDR "
        "--main_process_port=$MASTER_PORT",
        "export MASTER_PORT=$((15000 + SLURM_JOB_ID % 10000))",
        "-m torch.distributed.run",
        "-m accelerate.commands.launch",
    ):
        assert flags in readme, flags


def _on_node(word: str) -> str:
    """A launcher word as node 1 of job 12 (first node `node1`) reads it."""
    node = {
        "$SLURM_NODEID": "1",
        "$MASTER_ADDR": "node1",
        "$MASTER_PORT": str(master_port(12)),
        "$SLURM_JOB_ID": "12",
    }
    for var, value in node.items():
        word = word.replace(var, value)
    return word


def test_the_installed_launchers_accept_the_rendered_flags():
    """Each launcher module runs in the installed version, and its own argument parser
    accepts every flag launcher_prefix gives it."""
    from accelerate.commands.launch import launch_command_parser
    from torch.distributed.run import get_args_parser

    parsers = {"torchrun": get_args_parser, "accelerate": launch_command_parser}
    modules = {"torchrun": "torch.distributed.run", "accelerate": "accelerate.commands.launch"}
    parsed = {}
    for launcher, module in modules.items():
        done = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True)
        assert done.returncode == 0, done.stderr[-2000:]
        cfg = SlurmConfig(
            distill=SlurmResources(gpus=8, nodes=2),
            launcher=Launcher(launcher),
            accelerate_config=DEEPSPEED,
        )
        prefix = launcher_prefix(cfg)
        assert prefix[:3] == [sys.executable, "-m", module]
        argv = [*map(_on_node, prefix[3:]), "-m", "trainer.cli", "step"]
        parsed[launcher] = args = parsers[launcher]().parse_args(argv)
        assert (args.training_script, args.training_script_args, args.module) == (
            "trainer.cli",
            ["step"],
            True,
        )
    torchrun, accelerate = parsed["torchrun"], parsed["accelerate"]
    assert (torchrun.nproc_per_node, torchrun.nnodes, torchrun.node_rank) == ("8", "2", 1)
    assert (torchrun.rdzv_backend, torchrun.rdzv_endpoint, torchrun.rdzv_id) == (
        "c10d",
        "node1:15012",
        "12",
    )
    assert (accelerate.num_processes, accelerate.num_machines, accelerate.machine_rank) == (
        16,
        2,
        1,
    )
    assert (accelerate.main_process_ip, accelerate.main_process_port) == ("node1", 15012)
    assert accelerate.config_file == DEEPSPEED
    # One node: torchrun picks its own free port (--standalone), accelerate gets the job's.
    one_node = SlurmConfig(
        distill=SlurmResources(gpus=8),
        launcher=Launcher.ACCELERATE,
        accelerate_config=DEEPSPEED,
    )
    argv = [*map(_on_node, launcher_prefix(one_node)[3:]), "-m", "trainer.cli", "step"]
    args = launch_command_parser().parse_args(argv)
    assert (args.num_processes, args.num_machines, args.main_process_port) == (8, None, 15012)
