"""Distil preference pairs into an agent's adapter with TRL's DPOTrainer.

Direct Preference Optimization (Rafailov et al., NeurIPS 2023) raises the log-ratio of
the chosen over the rejected completion relative to a reference policy. The reference
here is the agent's own starting adapter (its previous generation), not the bare base
model: the adapter is loaded as the trainable "default" adapter and no ``peft_config``
is passed, so TRL copies it into a frozen "ref" adapter (TRL 1.16). Only
"default" is saved.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from societies.atomic import scratch_directory
from trainer.distill_sft import (
    DistillOutcome,
    SftSettings,
    load_trainable,
    prepare_trainer,
    save_trained,
    trainer_arguments,
)
from trainer.library_logs import quiet_training_libraries

# DPOTrainer's logged metrics kept in the training record, first and last logged step.
LOGGED = ("rewards/margins", "rewards/accuracies", "logps/chosen", "logps/rejected")


def train_dpo(
    agent: str,
    model_path: str,
    start_adapter: Path,
    examples: list[dict[str, Any]],
    out_dir: Path,
    settings: SftSettings,
    seed: int,
    label: str,
) -> DistillOutcome:
    """Train ``start_adapter`` on DPO rows ``{"prompt", "chosen", "rejected"}`` (TRL's
    conversational preference format) and save the adapter into ``out_dir``."""
    quiet_training_libraries()  # before TRL imports DeepSpeed
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    started = time.perf_counter()
    tokenizer, model = load_trainable(model_path, start_adapter)
    with scratch_directory(out_dir) as scratch:  # DPOTrainer's output_dir
        args = DPOConfig(**trainer_arguments(settings, seed, scratch), beta=settings.dpo_beta)
        trainer = DPOTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(examples),
            processing_class=tokenizer,
        )
        if "ref" not in model.peft_config:
            raise RuntimeError(
                "DPOTrainer did not copy the start adapter into a frozen 'ref' adapter; the "
                "reference would be the bare base model (TRL 1.16 does copy it; check the installed TRL version)"
            )
        prepare_trainer(trainer, label)
        trainer.train()
        history = [h for h in trainer.state.log_history if "loss" in h]
    save_trained(model, out_dir)
    metrics = {}
    for key in LOGGED:
        values = [float(h[key]) for h in history if key in h]
        if values:
            name = key.replace("/", "_")
            metrics[f"{name}_first"], metrics[f"{name}_last"] = values[0], values[-1]
    return DistillOutcome(
        agent=agent,
        operation="dpo",
        examples=len(examples),
        losses=[float(h["loss"]) for h in history],
        seconds=time.perf_counter() - started,
        metrics=metrics,
    )
