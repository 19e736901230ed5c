"""Distil a whole generation in one pass: every agent's adapter trained together.

The TRL path (:mod:`trainer.distill_sft`) trains one agent at a time, each in its own
model copy. This path stacks all agents' adapters in one :class:`MultiLoraEngine` and
trains them in one loop (:func:`trainer.distill_batched.train_batched_sft`), with
per-agent AdamW state, clipping and schedule, so each agent's result matches its own
separate training (tested in float64, tests/float32.py). It writes the same PEFT folders and
``training.json`` records as the TRL path.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from societies.atomic import atomic_directory
from trainer.distill_sft import (
    TRAINING_RECORD,
    DistillOutcome,
    SftSettings,
    carry_over,
    parent_label,
    read_outcome,
)


def distill_group(
    *,
    model_path: str,
    start_adapters: dict[str, Path],
    examples: dict[str, list[dict[str, Any]]],
    out_dirs: dict[str, Path],
    settings: SftSettings,
    seed: int,
    label: str = "",
    dtype: str = "float32",
    make_bar: Callable[..., Any] | None = None,
    done: Collection[str] = (),
    plan_file: Path | None = None,
) -> list[DistillOutcome]:
    """Train every agent in ``out_dirs`` on its ``examples``; write each adapter folder.

    Agents with no examples keep their adapter ("carried_over"). ``label`` names this
    pass in fault points (societies.faults), e.g. "generation 3". ``dtype`` is the
    training precision: float32 on CPU; the tests compare code paths in float64, where
    Adam cannot turn rounding into visible steps (tests/float32.py). ``make_bar`` builds
    a progress bar, called as tqdm is (``total=``, ``desc=``, ``unit=``): it advances
    by one per agent in each training step and shows the step's loss.

    ``done`` names agents whose folders an earlier, killed process already wrote: they
    are read, not written again. The groups are planned over every agent all the same,
    and a group with any agent missing trains whole: each agent's float32 rounding
    depends on the rows it shares a pass with, so only the same group gives the
    uninterrupted run's weights bit for bit (a kill between two writes of one group).
    ``plan_file`` keeps the groups planned by the first process, which a resumed one
    trains instead of planning them again (trainer.distill_memory.write_plan).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from societies.multi_lora import MultiLoraEngine
    from trainer.distill_batched import BatchedSftConfig, agent_steps, sft_example_from_chat
    from trainer.distill_memory import train_within_budget

    if settings.epochs != int(settings.epochs):
        raise ValueError(
            f"distill.epochs={settings.epochs}; the batched backend takes whole epochs"
        )
    agents = list(out_dirs)
    outcomes: dict[str, DistillOutcome] = {}
    done = frozenset(done)
    for agent in agents:
        if agent in done:
            outcomes[agent] = read_outcome(Path(out_dirs[agent]))
        elif not examples.get(agent):
            outcomes[agent] = carry_over(agent, Path(start_adapters[agent]), Path(out_dirs[agent]))
    training = [a for a in agents if examples.get(a)]
    if all(a in done for a in training):
        training = []
    if training:
        started = time.perf_counter()
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        base = AutoModelForCausalLM.from_pretrained(
            model_path, dtype=getattr(torch, dtype), use_safetensors=True
        )
        engine = MultiLoraEngine.from_adapter_dirs(base, {a: start_adapters[a] for a in training})
        data = {
            a: [
                sft_example_from_chat(tokenizer, row["prompt"], row["completion"])
                for row in examples[a]
            ]
            for a in training
        }
        config = BatchedSftConfig(
            learning_rate=settings.learning_rate,
            batch_size=settings.batch_size,
            num_epochs=int(settings.epochs),
            shuffle_seed=seed,
        )
        if make_bar is None:
            from functools import partial

            from tqdm import tqdm

            make_bar = partial(tqdm, disable=True)  # no-op update and set_postfix
        bar = make_bar(
            total=agent_steps({a: data[a] for a in training if a not in done}, config),
            desc=f"{label or 'batched'} distill",
            unit="agent-step",
        )
        group_started = [started]  # the first group's time includes loading the model

        def save(group: list[str], result) -> None:
            """Write a group's adapters as soon as it is trained: a kill during a later
            group (at the published protocol, one of 24 one-agent passes of ~25 s) keeps
            them, and the resumed run trains only the agents still missing."""
            now = time.perf_counter()
            seconds = (now - group_started[0]) / len(group)
            group_started[0] = now
            for agent in (a for a in group if a not in done):
                outcome = DistillOutcome(
                    agent=agent,
                    operation="sft",
                    examples=len(data[agent]),
                    losses=list(result.losses[agent]),
                    train_tokens=sum(len(e.prompt_ids) + len(e.completion_ids) for e in data[agent])
                    * int(settings.epochs),
                    seconds=seconds,
                    parent=parent_label(start_adapters[agent], out_dirs[agent]),
                    # prompt-head tokens run once per step instead of once per row
                    metrics={
                        "shared_prefix_tokens_saved": float(result.tokens_saved.get(agent, 0))
                    },
                )
                with atomic_directory(out_dirs[agent]) as tmp:
                    engine.save_adapter(agent, tmp)
                    (tmp / TRAINING_RECORD).write_text(json.dumps(outcome.to_dict(), indent=2))
                outcomes[agent] = outcome

        with bar:
            # Agents are trained in groups whose activations fit the memory budget; each
            # group's adapters are written before the next group starts.
            train_within_budget(
                engine,
                data,
                config,
                tokenizer.pad_token_id,
                settings.memory_budget_gb,
                label,
                on_step=lambda losses: _advance(
                    bar, {a: v for a, v in losses.items() if a not in done}
                ),
                on_group=save,
                skip=lambda group: all(a in done for a in group),
                plan_file=plan_file,
            )
    return [outcomes[a] for a in agents]


def _advance(bar, losses: dict[str, float]) -> None:
    """One training step done: show its loss (3 significant digits: late losses are
    ~1e-4), advance by its agents (the bar redraws)."""
    if not losses:  # a step of agents trained again only to keep their group whole
        return
    if len(losses) == 1:
        ((agent, loss),) = losses.items()
        bar.set_postfix(agent=agent, loss=f"{loss:.3g}", refresh=False)
    else:
        mean = sum(losses.values()) / len(losses)
        bar.set_postfix(agents=len(losses), mean_loss=f"{mean:.3g}", refresh=False)
    bar.update(len(losses))
