"""Distil an agent's rows into its own LoRA adapter with a TRL trainer (SFT or DPO).

Each agent trains in its own fresh copy of the base model with only its adapter
attached (named "default", as TRL expects), so one agent's step can never touch
another agent's weights, and the same function serves a Slurm array task per agent.
CPU settings from FACTS.md: ``use_cpu=True, bf16=False``. SFT is here; DPO's trainer
is :mod:`trainer.distill_dpo`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from societies import faults
from societies.atomic import atomic_directory
from societies.lora_folders import canonicalize_adapter_config, check_adapter_folder

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
    """
    if not examples:
        return carry_over(agent, Path(start_adapter), Path(out_dir))
    if settings.method == "dpo":
        from trainer.distill_dpo import train_dpo as train
    elif settings.method == "sft":
        train = _train
    else:
        raise ValueError(f"distillation method {settings.method!r}; expected 'sft' or 'dpo'")
    with atomic_directory(Path(out_dir)) as tmp:
        label = faults.short(Path(out_dir), 3)  # e.g. generation_000/adapters/agent_01
        outcome = train(
            agent, model_path, Path(start_adapter), examples, tmp, settings, seed, label
        )
        outcome = replace(outcome, parent=parent_label(start_adapter, out_dir))
        (tmp / TRAINING_RECORD).write_text(json.dumps(outcome.to_dict(), indent=2))
    return outcome


def parent_label(start_adapter: Path, out_dir: Path) -> str:
    """Where the parent adapter lies, relative to the folder holding both (the run
    directory), so a record does not change when the run directory moves."""
    start, out = Path(start_adapter).absolute(), Path(out_dir).absolute()
    return str(start.relative_to(os.path.commonpath([start, out])))


def carry_over(agent: str, start_adapter: Path, out_dir: Path) -> DistillOutcome:
    """Copy an agent's adapter unchanged into ``out_dir`` (it had nothing to learn from)."""
    outcome = DistillOutcome(agent, "carried_over", 0, parent=parent_label(start_adapter, out_dir))
    with atomic_directory(out_dir) as tmp:
        for item in start_adapter.iterdir():
            if item.name != TRAINING_RECORD:
                shutil.copy2(item, tmp / item.name)
        (tmp / TRAINING_RECORD).write_text(json.dumps(outcome.to_dict(), indent=2))
    return outcome


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
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    started = time.perf_counter()
    tokenizer, model = load_trainable(model_path, start_adapter)
    with tempfile.TemporaryDirectory(prefix="folkways-sft-") as scratch:
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
    """The TRL config arguments SFT and DPO share: CPU, float32, no checkpoints, seeded."""
    return dict(
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


def prepare_trainer(trainer, label: str) -> None:
    """Quiet the trainer's printing (our progress bar reports the loss) and add a fault
    point after every optimizer step."""
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(_fault_point_callback(label))


def save_trained(model, out_dir: Path) -> None:
    """Save only the trained "default" adapter, at the top level of ``out_dir`` (DPO's
    frozen "ref" copy is not saved)."""
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
