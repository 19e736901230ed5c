"""One agent's adapter trained in 2 processes equals 1 process with the same global batch,
and the launcher configs in configs/accelerate/ parse with the tools' own parsers.

The 2-process run goes through ``accelerate launch --config_file
configs/accelerate/cpu_ddp.yaml`` (the shipped config; accelerate starts the processes
through torchrun, and each rank reports back), the 1-process run is the test process
itself; both call :func:`trainer.distill_sft.distill_adapter` from this file's worker
(bottom) with ``distill.batch_size`` 8: 8 rows per step in one process, 4 in each of two.

Tolerances. Both runs train in float64 (the worker loads the base in float64): trained
weights can not be compared across float32 code paths with a rounding-derived
tolerance, since Adam turns the rounding of a nearly cancelling gradient into a step of
up to the learning rate (tests/float32.py). The two runs are two code paths: 4-row
batches padded to their own longest row instead of 8-row ones (other GEMM shapes, other
summation order), per-process losses scaled by the global token count, and gradients
summed by gloo's all-reduce, then halved. In float64 all of that rounds at ~1e-16, but
transformers' Llama keeps RMSNorm and the attention softmax in float32, where a 1e-16
change of input can flip a float32 rounding: gradients then differ by ~u32 ~ 6e-8
relative, the case ``ADAM_WEIGHTS_ATOL_FLOAT64`` (1e-6) was derived for. Measured: the
weights agree to 8e-16 (AMD EPYC). The logged losses are float32 whatever the model's
dtype (the Trainer sums them in a float32 tensor, and under 2 processes each rank's
loss is gathered and averaged in float32): at ~10.7 nats one float32 ulp is 9.5e-7, so
``LOSS_ATOL`` (2e-5, ~20 ulps; tests/float32.py) applies, not the float64 one. Measured:
2 ulps (1.9e-6). A real bug moves far more: a rank training alone (no all-reduce) sees
half the rows; a per-process mean instead of the global token mean reweights the rows
of unequal length; a per-process batch of 8 halves the number of steps.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.float32 import ADAM_WEIGHTS_ATOL_FLOAT64, LOSS_ATOL, assert_close

ROOT = Path(__file__).parents[1]
ACCELERATE = ROOT / "configs/accelerate"
WORKER_REPORT = "worker_report_rank"
# 16 rows, global batch 8, 2 epochs: 4 optimizer steps, every batch full (a short last
# batch would be filled up with repeated rows under 2 processes: trainer_arguments).
ROWS, BATCH, EPOCHS, LEARNING_RATE, SEED = 16, 8, 2, 5e-3, 3


def _rows() -> list[dict]:
    """Prompts and completions of unequal lengths, so that averaging the loss over each
    process's own tokens (instead of all processes' tokens) would show."""
    names = ["R", "K T", "B Q R K", "T"]
    return [
        {
            "prompt": [{"role": "user", "content": f"Round {i}. " + "Pick a name. " * (i % 5)}],
            "completion": [{"role": "assistant", "content": names[i % 4]}],
        }
        for i in range(ROWS)
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(command: list[str], spec: Path) -> list[dict]:
    """Run ``command`` + this file's worker on ``spec``; the reports of every rank."""
    env = {
        **os.environ,
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("WORLD_SIZE", None)
    env.pop("RANK", None)
    done = subprocess.run(
        [*command, str(Path(__file__)), "--worker", str(spec)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, (
        f"{command[:3]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    )
    # One file per rank: ranks printing their reports to the shared stdout pipe at the
    # same moment interleaved them on one line (seen on an idle machine, where both ranks
    # finish together: "Extra data" from json.loads).
    reports = [json.loads(p.read_text()) for p in spec.parent.glob(f"{WORKER_REPORT}*.json")]
    return sorted(reports, key=lambda r: r["rank"])


@pytest.fixture(scope="module")
def runs(tiny_model_path, tmp_path_factory):
    """The same distillation in this process and in 2 (accelerate launch, cpu_ddp.yaml)."""
    from societies.population import LoraSpec, PopulationModel

    root = tmp_path_factory.mktemp("ddp")
    population = PopulationModel(
        tiny_model_path, ["a"], LoraSpec(r=4, alpha=8), init_seeds={"a": 1}
    )
    start = population.save_adapter("a", root / "start" / "a")
    (root / "rows.json").write_text(json.dumps(_rows()))
    results = {"start": start}
    for name in ("one", "two"):
        spec = {
            "model": tiny_model_path,
            "start": str(start),
            "rows": str(root / "rows.json"),
            "out": str(root / name / "a"),
            "kept": str(root / name / "kept"),
        }
        if name == "one":
            reports = [_distil_and_report(spec)]
        else:
            (root / "spec.json").write_text(json.dumps(spec))
            launcher = [
                sys.executable, "-m", "accelerate.commands.launch",
                "--config_file", str(ACCELERATE / "cpu_ddp.yaml"),
                "--main_process_port", str(_free_port()),
            ]  # fmt: skip
            reports = _launch(launcher, root / "spec.json")
        results[name] = {"reports": reports, "out": root / name / "a"}
    return results


def test_both_ranks_ran_with_half_the_batch_each(runs):
    one, two = runs["one"]["reports"], runs["two"]["reports"]
    assert [(r["rank"], r["world_size"]) for r in one] == [(0, 1)]
    assert [(r["rank"], r["world_size"]) for r in two] == [(0, 2), (1, 2)]
    assert one[0]["per_device_batch"] == BATCH
    assert [r["per_device_batch"] for r in two] == [BATCH // 2, BATCH // 2]
    # Every rank returns the main process's outcome (the broadcast is also the barrier).
    assert two[0]["outcome"] == two[1]["outcome"]
    assert two[0]["kept"] == two[1]["kept"]
    assert two[0]["kept"]["operation"] == "carried_over"


def test_losses_and_weights_match_one_process(runs):
    one = runs["one"]["reports"][0]["outcome"]
    two = runs["two"]["reports"][0]["outcome"]
    assert len(one["losses"]) == len(two["losses"]) == EPOCHS * ROWS // BATCH
    assert_close(two["losses"], one["losses"], LOSS_ATOL, "per-step losses, 2 vs 1")
    assert one["losses"][-1] < one["losses"][0]
    # TRL gathers the token count over processes: the same total.
    assert two["train_tokens"] == one["train_tokens"] > 0
    weights_one = load_file(runs["one"]["out"] / "adapter_model.safetensors")
    weights_two = load_file(runs["two"]["out"] / "adapter_model.safetensors")
    assert_close(weights_two, weights_one, ADAM_WEIGHTS_ATOL_FLOAT64, "LoRA weights, 2 vs 1")


def test_adapter_moved_and_base_unchanged(runs):
    start = load_file(runs["start"] / "adapter_model.safetensors")
    trained = load_file(runs["two"]["out"] / "adapter_model.safetensors")
    assert start.keys() == trained.keys()
    # B starts at zero, so it moves at step 1; A gets a gradient once B is non-zero
    # (step 2 of 4). Every one of them must have moved.
    assert all(torch.count_nonzero(start[k]) == 0 for k in start if "lora_B" in k)
    unmoved = [k for k in start if torch.equal(start[k], trained[k].to(start[k].dtype))]
    assert unmoved == []
    # Each rank compared its base weights after training with the checkpoint on disk.
    for report in runs["one"]["reports"] + runs["two"]["reports"]:
        assert report["base_tensors_compared"] > 0 and report["base_unchanged"]


def test_written_folder_is_the_one_process_folder(runs):
    one, two = runs["one"]["out"], runs["two"]["out"]
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    assert json.loads((two / "adapter_config.json").read_text()) == json.loads(
        (one / "adapter_config.json").read_text()
    )
    rec_one = json.loads((one / "training.json").read_text())
    rec_two = json.loads((two / "training.json").read_text())
    assert rec_two.keys() == rec_one.keys()
    same = ("agent", "operation", "examples", "train_tokens", "parent", "metrics")
    assert {k: rec_two[k] for k in same} == {k: rec_one[k] for k in same}
    assert rec_two == runs["two"]["reports"][0]["outcome"]
    # Only the finished folders: no temporary sibling left by either rank.
    assert sorted(p.name for p in two.parent.iterdir()) == ["a", "kept"]


def test_batch_must_split_evenly_over_processes():
    from trainer.distill_sft import per_process_batch

    assert per_process_batch(8, 2) == 4
    with pytest.raises(ValueError, match=r"batch_size = 7 .* 2 processes"):
        per_process_batch(7, 2)


# ----- the launcher configs ------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "launcher"),
    [("cpu_ddp", "torchrun"), ("deepspeed_zero2", "deepspeed"), ("deepspeed_zero3", "deepspeed")],
)
def test_accelerate_configs_load_and_pick_their_launcher(name, launcher):
    """accelerate's own loader and launch checks (no process is started)."""
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    path = ACCELERATE / f"{name}.yaml"
    config = load_config_from_file(str(path))
    assert config.num_processes == 2 and config.num_machines == 1
    args = launch_command_parser().parse_args(["--config_file", str(path), "x.py"])
    args, _, precision_from_yaml = _validate_launch_command(args)
    if launcher == "torchrun":
        # launch_command's choice: multi_gpu and not --cpu -> torchrun, N processes.
        assert args.multi_gpu and not args.cpu and args.use_cpu
    else:
        assert args.use_deepspeed and config.distributed_type == "DEEPSPEED"
        json_file = ROOT / config.deepspeed_config["deepspeed_config_file"]
        assert json_file.is_file()
        # With a DeepSpeed JSON, accelerate refuses precision set in the YAML as well.
        assert not precision_from_yaml


@pytest.mark.parametrize(("name", "stage"), [("zero2", 2), ("zero3", 3)])
def test_deepspeed_configs_parse(name, stage, tiny_model_path, tmp_path):
    """The JSON with its "auto" values filled as the Trainer fills them (from our own
    trainer arguments, one process), then parsed and validated by DeepSpeed."""
    pytest.importorskip("deepspeed", reason="deepspeed is in the dev extra: pip install -e .[dev]")
    from deepspeed.runtime.config import DeepSpeedConfig
    from transformers import AutoModelForCausalLM
    from transformers.integrations.deepspeed import (
        HfTrainerDeepSpeedConfig,
        unset_hf_deepspeed_config,
    )
    from trl import SFTConfig

    from trainer.distill_sft import SftSettings, trainer_arguments

    raw = json.loads((ACCELERATE / f"{name}.json").read_text())  # plain JSON, as accelerate reads
    args = SFTConfig(**trainer_arguments(SftSettings(batch_size=BATCH), SEED, str(tmp_path)))
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    hf_config = HfTrainerDeepSpeedConfig(raw)  # also sets a global that zero.Init reads
    try:
        hf_config.trainer_config_process(args)
        hf_config.trainer_config_finalize(args, model, num_training_steps=4)
        filled = hf_config.config
    finally:
        unset_hf_deepspeed_config()
    assert _auto_keys(filled) == []
    ds = DeepSpeedConfig(filled)
    assert ds.zero_optimization_stage == stage
    assert (ds.train_batch_size, ds.train_micro_batch_size_per_gpu) == (BATCH, BATCH)
    assert ds.gradient_accumulation_steps == 1 and ds.gradient_clipping == args.max_grad_norm
    assert not ds.bfloat16_config.enabled and not ds.float16_config.enabled  # float32
    assert ds.optimizer_name is None and ds.scheduler_name is None  # the Trainer's own
    if stage == 3:
        assert ds.zero_config.gather_16bit_weights_on_model_save  # ZeRO-3 + LoRA needs it


def _auto_keys(config: dict, prefix: str = "") -> list[str]:
    """The keys of ``config`` (nested, dotted) whose value is still "auto"."""
    found = []
    for key, value in config.items():
        if isinstance(value, dict):
            found += _auto_keys(value, f"{prefix}{key}.")
        elif value == "auto":
            found.append(prefix + key)
    return found


# ----- the worker (also run as: python tests/test_distributed_distill.py --worker SPEC) --


def _distil_and_report(spec: dict) -> dict:
    """Distil the spec's adapter in float64, then carry it over once (both through
    distill_adapter); what this rank saw."""
    from transformers import AutoModelForCausalLM

    from trainer.distill_sft import SftSettings, distill_adapter, trainer_arguments

    loaded = []
    original = AutoModelForCausalLM.from_pretrained

    def float64_base(*args, **kwargs):
        model = original(*args, **{**kwargs, "dtype": torch.float64})
        loaded.append(model)
        return model

    AutoModelForCausalLM.from_pretrained = float64_base
    settings = SftSettings(epochs=EPOCHS, learning_rate=LEARNING_RATE, batch_size=BATCH)
    try:
        outcome = distill_adapter(
            agent="a",
            model_path=spec["model"],
            start_adapter=Path(spec["start"]),
            examples=json.loads(Path(spec["rows"]).read_text()),
            out_dir=Path(spec["out"]),
            settings=settings,
            seed=SEED,
        )
        kept = distill_adapter(
            agent="a",
            model_path=spec["model"],
            start_adapter=Path(spec["out"]),
            examples=[],
            out_dir=Path(spec["kept"]),
            settings=settings,
            seed=SEED,
        )
    finally:
        AutoModelForCausalLM.from_pretrained = original
    on_disk = original(spec["model"], dtype=torch.float64).state_dict()
    trained_base = {
        k.replace("base_model.model.", "").replace(".base_layer", ""): v
        for k, v in loaded[-1].state_dict().items()
        if "lora_" not in k
    }
    report = {
        "rank": int(os.environ.get("RANK", "0")),
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
        "per_device_batch": trainer_arguments(settings, SEED, "")["per_device_train_batch_size"],
        "outcome": outcome.to_dict(),
        "kept": kept.to_dict(),
        "base_tensors_compared": len(on_disk),
        "base_unchanged": set(on_disk) <= set(trained_base)
        and all(torch.equal(on_disk[k], trained_base[k]) for k in on_disk),
    }
    return report


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
    spec_path = Path(sys.argv[2])
    report = _distil_and_report(json.loads(spec_path.read_text()))
    (spec_path.parent / f"{WORKER_REPORT}{report['rank']}.json").write_text(json.dumps(report))
