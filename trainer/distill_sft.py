"""Distil an agent's rows into its own LoRA adapter with a TRL trainer (SFT or DPO).

Each agent trains in its own fresh copy of the base model with only its adapter
attached (named "default", as TRL expects), so one agent's step can never touch
another agent's weights, and the same function serves a Slurm array task per agent.
CPU settings: ``use_cpu=True, bf16=False`` (TRL's configs default to bf16, far slower on CPU). SFT is here; DPO's trainer
is :mod:`trainer.distill_dpo`.

Several processes (``torchrun --nproc_per_node N`` or ``accelerate launch --config_file
configs/accelerate/...``): every process calls :func:`distill_adapter` with the same
arguments and they train one adapter together, data-parallel. ``distill.batch_size``
stays the global batch, the rows of one optimizer step, so N processes take
``batch_size / N`` rows each and the steps are those of one process (see
:func:`trainer_arguments`). Only the main process (rank 0) writes the adapter folder;
the others wait for it and return its outcome. Run alone, nothing here changes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from societies import faults
from societies.atomic import atomic_directory, scratch_directory
from societies.lora_folders import canonicalize_adapter_config, check_adapter_folder
from trainer.library_logs import quiet_training_libraries

TRAINING_RECORD = "training.json"


@dataclass(frozen=True)
class SftSettings:
    """Training settings of one distillation (``distill:`` in the config)."""

    epochs: float = 2.0
    learning_rate: float = 1e-3
    batch_size: int = 8
    max_length: int = 512
    memory_budget_gb: float = 8.0  # batched backend only (trainer.distill_memory)
    method: str = "sft"  # "sft" or "dpo"
    dpo_beta: float = 0.1


@dataclass(frozen=True)
class DistillOutcome:
    """What happened to one agent's adapter in one generation (kept beside the adapter)."""

    agent: str
    operation: str  # "sft", "dpo" or "carried_over"
    examples: int
    losses: list[float] = field(default_factory=list)
    train_tokens: int = 0
    seconds: float = 0.0
    parent: str = ""
    metrics: dict[str, float] = field(default_factory=dict)  # e.g. DPO's reward margins

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DistillOutcome:
        return cls(**data)


def read_outcome(adapter_dir: Path) -> DistillOutcome:
    return DistillOutcome.from_dict(json.loads((Path(adapter_dir) / TRAINING_RECORD).read_text()))


def distill_adapter(
    *,
    agent: str,
    model_path: str,
    start_adapter: Path,
    examples: list[dict[str, Any]],
    out_dir: Path,
    settings: SftSettings,
    seed: int,
) -> DistillOutcome:
    """Train ``start_adapter`` on ``examples`` and write the result to ``out_dir``.

    ``settings.method`` picks the trainer: "sft" rows are ``{"prompt", "completion"}``,
    "dpo" rows ``{"prompt", "chosen", "rejected"}``. With no examples the adapter is
    copied unchanged ("carried_over"). The output folder appears whole (renamed into
    place) with ``training.json`` inside.

    Under several processes (module docstring) every process must call this with the
    same arguments; only the main one writes ``out_dir``, and each returns its outcome.
    """
    if not examples:
        return carry_over(agent, Path(start_adapter), Path(out_dir))
    if settings.method == "dpo":
        from trainer.distill_dpo import train_dpo as train
    elif settings.method == "sft":
        train = _train
    else:
        raise ValueError(f"distillation method {settings.method!r}; expected 'sft' or 'dpo'")
    label = faults.short(Path(out_dir), 3)  # e.g. generation_000/adapters/agent_01
    if not is_main_process():
        # Train in step with the main process; save_trained writes nothing here.
        train(
            agent, model_path, Path(start_adapter), examples, Path(out_dir), settings, seed, label
        )
        return _outcome_of_main(None)
    with atomic_directory(Path(out_dir)) as tmp:
        outcome = train(
            agent, model_path, Path(start_adapter), examples, tmp, settings, seed, label
        )
        outcome = replace(outcome, parent=parent_label(start_adapter, out_dir))
        (tmp / TRAINING_RECORD).write_text(json.dumps(outcome.to_dict(), indent=2))
    return _outcome_of_main(outcome)


def parent_label(start_adapter: Path, out_dir: Path) -> str:
    """Where the parent adapter lies, relative to the folder holding both (the run
    directory), so a record does not change when the run directory moves."""
    start, out = Path(start_adapter).absolute(), Path(out_dir).absolute()
    return str(start.relative_to(os.path.commonpath([start, out])))


def carry_over(agent: str, start_adapter: Path, out_dir: Path) -> DistillOutcome:
    """Copy an agent's adapter unchanged into ``out_dir`` (it had nothing to learn from).

    Under several processes the main one copies and the others wait until it has."""
    outcome = DistillOutcome(agent, "carried_over", 0, parent=parent_label(start_adapter, out_dir))
    if is_main_process():
        with atomic_directory(out_dir) as tmp:
            for item in start_adapter.iterdir():
                if item.name != TRAINING_RECORD:
                    shutil.copy2(item, tmp / item.name)
            (tmp / TRAINING_RECORD).write_text(json.dumps(outcome.to_dict(), indent=2))
    return _outcome_of_main(outcome if is_main_process() else None)


def _train(
    agent: str,
    model_path: str,
    start_adapter: Path,
    examples: list[dict[str, Any]],
    out_dir: Path,
    settings: SftSettings,
    seed: int,
    label: str,
) -> DistillOutcome:
    quiet_training_libraries()  # before TRL imports DeepSpeed
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    started = time.perf_counter()
    tokenizer, model = load_trainable(model_path, start_adapter)
    with scratch_directory(out_dir) as scratch:  # TRL's output_dir; it saves nothing there
        args = SFTConfig(**trainer_arguments(settings, seed, scratch))
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(examples),
            processing_class=tokenizer,
        )
        prepare_trainer(trainer, label)
        trainer.train()
        losses = [float(h["loss"]) for h in trainer.state.log_history if "loss" in h]
        # TRL logs the running count of tokens trained on; the last entry is the total.
        tokens = int(
            next(
                (h["num_tokens"] for h in reversed(trainer.state.log_history) if "num_tokens" in h),
                0,
            )
        )
    save_trained(model, out_dir)
    return DistillOutcome(
        agent=agent,
        operation="sft",
        examples=len(examples),
        losses=losses,
        train_tokens=tokens,
        seconds=time.perf_counter() - started,
    )


def load_trainable(model_path: str, start_adapter: Path):
    """The tokenizer and a fresh float32 base with ``start_adapter`` as the trainable
    "default" adapter (the only one attached)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_adapter_folder(start_adapter)  # safetensors and whole, before loading anything
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    # safetensors only: no fallback to a pickled pytorch_model.bin / adapter_model.bin.
    base = AutoModelForCausalLM.from_pretrained(
        model_path, dtype=torch.float32, use_safetensors=True
    )
    model = PeftModel.from_pretrained(base, str(start_adapter), is_trainable=True)
    return tokenizer, model


def trainer_arguments(settings: SftSettings, seed: int, output_dir: str) -> dict[str, Any]:
    """The TRL config arguments SFT and DPO share: CPU, float32, no checkpoints, seeded.

    Started by a launcher (``WORLD_SIZE`` set), the processes split the global batch
    ``settings.batch_size`` evenly (TRL/Trainer's ``per_device_train_batch_size`` is
    per process; the Trainer's sampler deals consecutive per-process batches of one
    shuffled order to the processes in turn, so step k trains on the same rows as one
    process does). Per-token losses are averaged over the tokens of all processes
    (``average_tokens_across_devices``, on by default), so the loss and gradient of a
    step are those of one process up to float32 summation order. That equality holds
    when the number of rows is a multiple of ``batch_size`` and LoRA dropout is 0: a
    last, short step is filled up with rows from the start of the epoch by accelerate
    (``even_batches``), and dropout masks are drawn per process.
    CPU stays the device unless a launcher started the process on a machine with CUDA.
    """
    args = dict(
        output_dir=output_dir,
        num_train_epochs=settings.epochs,
        per_device_train_batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        max_length=settings.max_length,
        use_cpu=True,
        bf16=False,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        seed=seed,
        data_seed=seed,
        disable_tqdm=True,
        dataset_num_proc=None,
    )
    if launched():
        on_cpu = not _cuda_available()
        args.update(
            per_device_train_batch_size=per_process_batch(settings.batch_size, process_count()),
            use_cpu=on_cpu,
            # gloo on CPU (accelerate would pick MPI if torch had it); NCCL's default on GPUs
            ddp_backend="gloo" if on_cpu else None,
        )
    return args


def prepare_trainer(trainer, label: str) -> None:
    """Quiet the trainer's printing (our progress bar reports the loss) and add a fault
    point after every optimizer step."""
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(_fault_point_callback(label))


def save_trained(model, out_dir: Path) -> None:
    """Save only the trained "default" adapter, at the top level of ``out_dir`` (DPO's
    frozen "ref" copy is not saved).

    Under several processes every process calls this and only the main one writes."""
    with _gathered_zero3(model):
        if is_main_process():
            model.save_pretrained(out_dir, selected_adapters=["default"])
            canonicalize_adapter_config(out_dir)


def _fault_point_callback(label: str):
    from transformers import TrainerCallback

    class FaultPointPerStep(TrainerCallback):
        """A fault point after every optimizer step (societies.faults; no-op unless armed)."""

        def on_step_end(self, args, state, control, **kwargs):
            faults.point(f"distill: {label} step {state.global_step}")

    return FaultPointPerStep()


def settings_from_config(distill_config) -> SftSettings:
    return SftSettings(
        epochs=distill_config.epochs,
        learning_rate=distill_config.learning_rate,
        batch_size=distill_config.batch_size,
        max_length=distill_config.max_length,
        memory_budget_gb=distill_config.memory_budget_gb,
        method=getattr(distill_config.method, "value", distill_config.method),
        dpo_beta=distill_config.dpo_beta,
    )


# ----- several processes (torchrun, accelerate launch) ----------------------------------
# Ranks come from the launcher's environment (torchrun and accelerate launch both set
# RANK and WORLD_SIZE), so they are known before the process group exists.


def launched() -> bool:
    """Whether a launcher (torchrun, accelerate launch) started this process."""
    return "WORLD_SIZE" in os.environ


def process_count() -> int:
    """How many processes train together (1 when run alone)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """The process that writes (rank 0; the only one when run alone)."""
    return int(os.environ.get("RANK", "0")) == 0


def per_process_batch(batch_size: int, processes: int) -> int:
    """Each process's share of the global batch ``batch_size``."""
    if batch_size % processes:
        raise ValueError(
            f"distill.batch_size = {batch_size} does not split evenly over {processes} "
            f"processes; accepted: a multiple of {processes} (e.g. "
            f"{processes * max(1, round(batch_size / processes))}), or launch a number of "
            f"processes that divides {batch_size}"
        )
    return batch_size // processes


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _outcome_of_main(outcome: DistillOutcome | None) -> DistillOutcome:
    """The main process's outcome, on every process, once the main one has written it.

    Alone, ``outcome`` itself. The broadcast is also the barrier: no process goes on
    (e.g. to the next agent, or to check which adapters are saved) before the folder is
    in place. If the main process fails first, the launcher stops the others.
    """
    if process_count() == 1:
        assert outcome is not None
        return outcome
    import torch.distributed as dist
    from accelerate import PartialState

    # Training set the process group up; a carry-over before any training has not yet.
    PartialState(cpu=not _cuda_available())
    box = [outcome.to_dict() if outcome is not None else None]
    dist.broadcast_object_list(box, src=0)
    return DistillOutcome.from_dict(box[0])


def _gathered_zero3(model):
    """Under DeepSpeed ZeRO-3 each process holds a shard of every parameter: gather the
    trainable (adapter) ones on every process for the save (a collective, so every
    process enters). Any other case: nothing to do. Not run here (ZeRO needs a GPU)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not any(hasattr(p, "ds_id") for p in trainable):
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(trainable, modifier_rank=None)
