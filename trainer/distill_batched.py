"""Multi-adapter SFT distillation: every agent's adapter trained in one pass.

Each optimisation step takes the next mini-batch of *every* agent that still has data,
stacks all rows into one batch for :class:`societies.multi_lora.MultiLoraEngine` (rows
grouped by agent, so no weight gather) and back-propagates the sum of the per-agent
losses. The agents' LoRA parameters are disjoint slices of the stacked tensors, so the
gradient of agent ``a``'s slice is exactly the gradient of agent ``a``'s own loss: one
backward trains all agents as N separate runs would.

What separate runs would also have, and a plain optimiser over the stacked tensors would
not, is per-agent state:
- AdamW moments and step counts per agent, and an agent with no rows in a step is not
  touched at all (Adam's momentum would otherwise keep moving it);
- gradient-norm clipping per agent (HF ``max_grad_norm``), on that agent's norm only;
- the learning-rate schedule per agent, counted in that agent's own steps.

The loss is the mean token cross-entropy over each agent's completion tokens in its
batch, as TRL's ``SFTTrainer`` computes it (completion-only loss). Where a step's rows
do not fit the memory budget at once (``rows_per_forward``), they run in consecutive
forwards whose gradients accumulate before the update, each token's loss divided by
its agent's completion tokens in the whole step: the same loss and gradient. The
output head runs only on completion positions: prompt positions carry no loss, and at a
vocabulary of 49k the head is ~20% of the model's FLOPs. The prompt head an agent's
rows share is run once per step, not once per row (:mod:`trainer.distill_shared_prefix`;
``shared_prefix=False`` runs every row whole).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

import torch
from torch import nn

from societies import faults
from societies.multi_lora import MultiLoraEngine
from trainer.distill_memory import trim_glibc_heap
from trainer.distill_shared_prefix import decoder_of, hidden_after_shared_heads, shared_head_length
from trainer.stacked_adamw import StackedAdamW


class LrSchedule(str, Enum):
    """Learning-rate schedules (HF ``lr_scheduler_type`` names)."""

    LINEAR = "linear"
    CONSTANT = "constant"


@dataclass(frozen=True)
class SftExample:
    """One tokenized SFT example: the loss covers the completion tokens only."""

    prompt_ids: tuple[int, ...]
    completion_ids: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.completion_ids:
            raise ValueError("an SFT example needs at least one completion token")
        if not self.prompt_ids:
            raise ValueError("an SFT example needs at least one prompt token")


def sft_example_from_chat(
    tokenizer, prompt: Sequence[dict], completion: Sequence[dict]
) -> SftExample:
    """Tokenize a conversational prompt/completion pair the way TRL's ``SFTTrainer`` does.

    The prompt is rendered with the generation prompt, prompt + completion without it;
    the completion starts where the two token sequences diverge.
    """
    prompt_ids = _chat_ids(tokenizer, list(prompt), add_generation_prompt=True)
    full_ids = _chat_ids(tokenizer, list(prompt) + list(completion), add_generation_prompt=False)
    split = 0
    while split < min(len(prompt_ids), len(full_ids)) and prompt_ids[split] == full_ids[split]:
        split += 1
    return SftExample(tuple(full_ids[:split]), tuple(full_ids[split:]))


def _chat_ids(tokenizer, messages: list[dict], add_generation_prompt: bool) -> list[int]:
    text = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt
    )
    return tokenizer(text, add_special_tokens=False).input_ids


@dataclass(frozen=True)
class BatchedSftConfig:
    """Hyper-parameters, with TRL/HF defaults where they exist.

    Attributes:
        learning_rate: peak learning rate (AdamW).
        batch_size: examples per agent per step.
        num_epochs: passes over each agent's examples.
        lr_schedule: ``linear`` decays to 0 over each agent's own steps (HF default).
        max_grad_norm: per-agent gradient clipping; ``0`` disables it.
        weight_decay, adam_beta1, adam_beta2, adam_epsilon: AdamW (HF defaults).
        shuffle_seed: each agent's example order per epoch comes from
            ``random.Random(f"{shuffle_seed}:{agent}:{epoch}")``; ``None`` keeps the order.
        shared_prefix: run the prompt head each agent's rows share once per step
            (same loss and gradients up to rounding); ``False`` runs every row whole.
    """

    learning_rate: float = 2e-4
    batch_size: int = 8
    num_epochs: int = 1
    lr_schedule: LrSchedule = LrSchedule.LINEAR
    max_grad_norm: float = 1.0
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    shuffle_seed: int | None = 0
    shared_prefix: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.num_epochs < 1:
            raise ValueError(
                f"batch_size and num_epochs must be >= 1, got {self.batch_size}, {self.num_epochs}"
            )
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        object.__setattr__(self, "lr_schedule", LrSchedule(self.lr_schedule))


def agent_batches(
    examples: Sequence[SftExample], config: BatchedSftConfig, agent: str
) -> list[list[SftExample]]:
    """The agent's mini-batches in training order (also used by per-agent reference runs)."""
    batches = []
    for epoch in range(config.num_epochs):
        order = list(range(len(examples)))
        if config.shuffle_seed is not None:
            random.Random(f"{config.shuffle_seed}:{agent}:{epoch}").shuffle(order)
        for start in range(0, len(order), config.batch_size):
            batches.append([examples[i] for i in order[start : start + config.batch_size]])
    return batches


def agent_steps(data: Mapping[str, Sequence[SftExample]], config: BatchedSftConfig) -> int:
    """How many (agent, step) pairs training ``data`` takes: the length of its progress bar."""
    return sum(len(agent_batches(rows, config, a)) for a, rows in data.items() if rows)


def lr_at(config: BatchedSftConfig, step: int, total_steps: int) -> float:
    """Learning rate for an agent's ``step``-th update (0-based), as HF's schedulers give it."""
    if config.lr_schedule is LrSchedule.CONSTANT:
        return config.learning_rate
    return config.learning_rate * max(0.0, (total_steps - step) / max(1, total_steps))


def collate(rows: Sequence[SftExample], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``/``attention_mask`` and ``labels`` (-100 off the completion)."""
    width = max(len(r.prompt_ids) + len(r.completion_ids) for r in rows)
    ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for b, row in enumerate(rows):
        p, c = len(row.prompt_ids), len(row.completion_ids)
        ids[b, : p + c] = torch.tensor(row.prompt_ids + row.completion_ids)
        mask[b, : p + c] = 1
        labels[b, p : p + c] = torch.tensor(row.completion_ids)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def completion_token_losses(
    model: nn.Module, batch: Mapping[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of every completion token and the row it belongs to.

    Runs the decoder on all tokens but the output head only where a label follows.

    Returns:
        ``(losses [K], rows [K])`` over the K predicted completion tokens.
    """
    hidden = decoder_of(model)(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
    ).last_hidden_state
    return losses_from_hidden(model, hidden, batch["labels"])


def losses_from_hidden(
    model: nn.Module, hidden: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`completion_token_losses` from the decoder's output ``hidden`` ``[B, T, H]``
    and the ``labels`` ``[B, T]`` of the same positions."""
    targets = labels[:, 1:]
    where = targets != -100
    rows, cols = where.nonzero(as_tuple=True)
    logits = model.get_output_embeddings()(hidden[rows, cols])
    # Upcast half precision to float32, never down: a float64 run (the tests' exact
    # comparisons) keeps float64 losses.
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    losses = nn.functional.cross_entropy(logits, targets[rows, cols], reduction="none")
    return losses, rows


def step_token_losses(
    engine: MultiLoraEngine,
    agent_rows: Mapping[str, Sequence[SftExample]],
    pad_token_id: int,
    shared_prefix: bool,
) -> tuple[torch.Tensor, torch.Tensor, int, dict[str, int]]:
    """Completion-token losses of one step's rows, grouped by agent in ``agent_rows`` order.

    Returns:
        ``(losses [K], token_agent [K], tokens_run, tokens_saved)``: the adapter index
        of each loss token; the tokens the decoder ran; per agent, the tokens its shared
        head spared (its head's repeats).
    """
    agents = list(agent_rows)
    rows = [r for a in agents for r in agent_rows[a]]
    row_agent = torch.tensor([engine.index[a] for a in agents for _ in agent_rows[a]])
    heads = {a: shared_head_length(agent_rows[a]) for a in agents} if shared_prefix else {}
    if not heads or min(heads.values()) == 0:  # a one-token prompt: no head to share
        batch = collate(rows, pad_token_id)
        with engine.select(row_agent), engine.peft_disabled():
            losses, token_rows = completion_token_losses(engine.model, batch)
        return losses, row_agent[token_rows], int(batch["attention_mask"].sum()), {}
    tails = collate(
        [
            SftExample(r.prompt_ids[heads[a] :], r.completion_ids)
            for a in agents
            for r in agent_rows[a]
        ],
        pad_token_id,
    )
    hidden = hidden_after_shared_heads(
        engine,
        heads=[agent_rows[a][0].prompt_ids[: heads[a]] for a in agents],
        head_agents=torch.tensor([engine.index[a] for a in agents]),
        row_head=torch.tensor([k for k, a in enumerate(agents) for _ in agent_rows[a]]),
        row_agents=row_agent,
        tails=tails["input_ids"],
        tail_mask=tails["attention_mask"],
        pad_token_id=pad_token_id,
    )
    losses, token_rows = losses_from_hidden(engine.model, hidden, tails["labels"])
    saved = {a: heads[a] * (len(agent_rows[a]) - 1) for a in agents}
    run = sum(heads.values()) + int(tails["attention_mask"].sum())
    return losses, row_agent[token_rows], run, saved


def _forward_parts(
    step_rows: Mapping[str, Sequence[SftExample]], rows_per_forward: int | None
) -> list[dict[str, Sequence[SftExample]]]:
    """One step's rows split into forwards of at most ``rows_per_forward`` rows per agent
    (consecutive slices, agents in the same order); one part when ``None``."""
    if rows_per_forward is None:
        return [dict(step_rows)]
    longest = max(len(rows) for rows in step_rows.values())
    return [
        {
            a: rows[start : start + rows_per_forward]
            for a, rows in step_rows.items()
            if len(rows) > start
        }
        for start in range(0, longest, rows_per_forward)
    ]


@dataclass
class BatchedSftResult:
    """Per-agent training record.

    Attributes:
        losses: agent -> the loss of each of its steps (mean over its completion tokens).
        grad_norms: agent -> its gradient norm before clipping, per step.
        tokens: tokens the decoder ran in forward passes (a shared head counts once).
        tokens_saved: agent -> tokens a plain step would also have run (its shared
            head's repeats).
    """

    losses: dict[str, list[float]] = field(default_factory=dict)
    grad_norms: dict[str, list[float]] = field(default_factory=dict)
    tokens: int = 0
    tokens_saved: dict[str, int] = field(default_factory=dict)


def train_batched_sft(
    engine: MultiLoraEngine,
    data: Mapping[str, Sequence[SftExample]],
    config: BatchedSftConfig,
    pad_token_id: int,
    label: str = "batched",
    on_step: Callable[[dict[str, float]], None] | None = None,
    rows_per_forward: int | None = None,
) -> BatchedSftResult:
    """Train the adapters of all agents in ``data`` together (in place in ``engine``).

    Args:
        engine: holds every agent's adapter; agents not in ``data`` are left unchanged.
        data: agent -> its SFT examples (agents may have different numbers of examples).
        config: hyper-parameters shared by all agents.
        pad_token_id: id used to right-pad rows (masked, never a label).
        on_step: called after every step with the loss of each agent it trained (a
            progress bar; :func:`agent_steps` is the total it advances by).
        rows_per_forward: at most this many rows of each agent in one forward; a step
            with more runs in several, its gradients accumulated (``None``: one forward
            per step).

    Returns:
        per-agent losses and gradient norms for every step.
    """
    unknown = [a for a in data if a not in engine.index]
    if unknown:
        raise KeyError(f"agents {unknown} have no adapter in the engine")
    if rows_per_forward is not None and rows_per_forward < 1:
        raise ValueError(f"rows_per_forward must be >= 1 or None, got {rows_per_forward}")
    agents = sorted((a for a in data if data[a]), key=engine.index.__getitem__)
    schedule = {a: agent_batches(data[a], config, a) for a in agents}
    totals = {a: len(b) for a, b in schedule.items()}
    params = [p for layer in engine.layers.values() for p in (layer.lora_A, layer.lora_B)]
    for p in engine.model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    optimizer = StackedAdamW(params, len(engine.names), config)
    result = BatchedSftResult(losses={a: [] for a in agents}, grad_norms={a: [] for a in agents})
    was_training = engine.model.training
    engine.model.train()
    try:
        for step in range(max(totals.values(), default=0)):
            live = [a for a in agents if step < totals[a]]
            for p in params:
                p.grad = None
            step_rows = {a: schedule[a][step] for a in live}
            # Sum over agents of (mean over that agent's completion tokens), accumulated
            # over the step's forwards.
            per_agent_count = torch.zeros(len(engine.names), dtype=torch.float64)
            for a in live:
                per_agent_count[engine.index[a]] = sum(len(r.completion_ids) for r in step_rows[a])
            active = per_agent_count > 0
            per_agent_sum = torch.zeros(len(engine.names), dtype=torch.float64)
            parts = _forward_parts(step_rows, rows_per_forward)
            for k, part in enumerate(parts):
                if k:
                    trim_glibc_heap()  # what the last forward freed, before the next one
                losses, token_agent, run, saved = step_token_losses(
                    engine, part, pad_token_id, config.shared_prefix
                )
                result.tokens += run
                for a, n in saved.items():
                    result.tokens_saved[a] = result.tokens_saved.get(a, 0) + n
                divisor = per_agent_count.to(losses.dtype)[token_agent]
                (losses / divisor).sum().backward()
                per_agent_sum.index_add_(0, token_agent, losses.detach().to(torch.float64))
            per_agent = (per_agent_sum[active] / per_agent_count[active]).to(losses.dtype)
            norms = optimizer.clip_grad_norms(config.max_grad_norm, active)
            lrs = torch.zeros(len(engine.names))
            for a in live:
                lrs[engine.index[a]] = lr_at(config, step, totals[a])
            optimizer.step(active, lrs)
            step_losses = dict(
                zip(
                    [n for n in engine.names if active[engine.index[n]]],
                    per_agent.tolist(),
                    strict=True,
                )
            )
            for a, value in step_losses.items():
                result.losses[a].append(value)
                result.grad_norms[a].append(float(norms[engine.index[a]]))
            if on_step is not None:
                on_step(step_losses)
            faults.point(f"distill: {label} step {step}")
    finally:
        for p in params:
            p.requires_grad_(False)
            p.grad = None
        engine.model.train(was_training)
    if any(math.isnan(v) for values in result.losses.values() for v in values):
        raise FloatingPointError("a per-agent loss became NaN; lower learning_rate")
    return result
