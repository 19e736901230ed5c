"""How many agents one batched distillation pass may train at once, within a memory budget.

The batched backend (trainer.distill_batched) stacks every training agent's rows into
one forward/backward; its peak memory is the activations autograd keeps for all those
tokens. At the published naming-game protocol (24 agents x 8 rows x ~230 tokens on
SmolLM2-135M) that is ~90 GB: the whole pass was killed by the OOM killer on a 24 GB
machine. So agents are split into groups that each fit the budget, trained one group
after the other on the same engine; each agent's training is unchanged (its batches,
schedule and AdamW state are its own), so the adapters equal one-group training up
to float32 rounding (tests/test_distill_memory.py). Where even one agent's step does
not fit (the donor game's ~430-token rows, 8 to a step: ~8.5 GiB), its rows run in
several forwards whose gradients accumulate: the same update, less memory at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from societies.atomic import atomic_write_json

# Activations kept per token per decoder layer of a Llama-style model, in floats: the
# normed input shared by q/k/v (h), q, k, v (h + 2 kv), attention output (h), o_proj
# input and the residual stream (2h), post-attention norm (h), gate, up, act(gate) and
# their product (4 i), each LoRA's A-projection (7 r), attention probabilities
# (heads x sequence length). Measured on SmolLM2-135M (h=576, i=1536, 30 layers,
# 230-token rows, 2 cores): 1.9-2.1 MB per token against 1.45 MB from this count, so
# the estimate is scaled by SAFETY to stay on the safe side.
SAFETY = 1.6
FLOAT_BYTES = 4

# What a training pass holds beyond the per-token estimate, whatever its rows. Measured
# with scripts/benchmarks/bench_distill_memory.py (445-token rows, Intel Xeon,
# 2026-12-07): peaks grew by ~0.8 GB a row under glibc's malloc (~0.63 under tcmalloc)
# above ~0.7 GB at one row (0.83 for two agents trained one after the other; ~0.5
# under tcmalloc). The SAFETY factor covers that at many rows a forward (the estimate is
# ~1.2 GB a row there) but not at one or two: 2 and 3 GB budgets were exceeded by up to
# 9% under glibc before this term.
PASS_FIXED_BYTES = 0.9e9


def activation_bytes_per_token(model_config, lora_rank: int, seq_len: int) -> float:
    """Estimated training activation memory per token (bytes), for a Llama-style config."""
    h = model_config.hidden_size
    i = model_config.intermediate_size
    heads = model_config.num_attention_heads
    kv_heads = getattr(model_config, "num_key_value_heads", None) or heads
    kv = h // heads * kv_heads
    per_layer = 6 * h + 2 * kv + 4 * i + 7 * lora_rank + heads * seq_len
    return SAFETY * FLOAT_BYTES * per_layer * model_config.num_hidden_layers


def current_rss_bytes() -> int:
    """This process's resident memory now (Linux /proc; 0 where unavailable)."""
    status = Path("/proc/self/status")
    if not status.is_file():
        return 0
    found = re.search(r"VmRSS:\s+(\d+)\s+kB", status.read_text())
    return int(found.group(1)) * 1024 if found else 0


def release_free_memory() -> None:
    """Hand memory Python has freed back to the OS, so that :func:`current_rss_bytes`
    counts only what is in use.

    glibc keeps freed heap pages mapped: after an earlier run in the same process (a
    sweep runs one after the other) or the rollout's population, the resident size stayed
    near its peak and the budget seemed spent (a committed-minority sweep's third run
    found 0.2 of 8 GB left and stopped). ``malloc_trim(0)`` returns them; under tcmalloc
    (:mod:`trainer.malloc`) its ``ReleaseFreeMemory`` does; elsewhere than glibc this
    only collects garbage.
    """
    import gc

    from trainer.malloc import release_tcmalloc_free_memory

    gc.collect()
    release_tcmalloc_free_memory()
    trim_glibc_heap()


def trim_glibc_heap() -> None:
    """Return the free pages of glibc's heap to the OS (``malloc_trim(0)``); nothing
    under tcmalloc (which reuses its spans) or elsewhere than glibc.

    Also called between the forwards of a split step: glibc serves each forward's blocks
    (below its mmap threshold, which rises to 32 MiB) from a heap that fragments, so
    with several forwards per step it kept growing. Measured (445-token rows, Intel
    Xeon, processes alternated): peak 3.41 -> 3.01 GB under a 3 GB budget, 4.81 -> 3.92
    GB under 5 GB, for ~9% more time in those passes (each trim walks the heap).
    """
    import contextlib
    import ctypes
    import ctypes.util

    from trainer.malloc import loaded_tcmalloc

    name = ctypes.util.find_library("c")
    if loaded_tcmalloc() or not name:
        return
    with contextlib.suppress(OSError, AttributeError):  # not glibc
        ctypes.CDLL(name).malloc_trim(0)


def plan_groups(
    step_tokens: Mapping[str, int],
    bytes_per_token: float,
    available_bytes: float,
    *,
    hint: str = "",
) -> list[list[str]]:
    """Split agents (in the given order) into consecutive groups that fit ``available_bytes``.

    Args:
        step_tokens: agent -> the most tokens (rows x padded width) one of its steps holds.
        bytes_per_token: activation memory per token.
        available_bytes: what a group's activations may take.
        hint: what to change if one agent alone does not fit (named in the error).
    Raises:
        MemoryError: one agent's step alone needs more than ``available_bytes``.
    """
    groups: list[list[str]] = []
    used = 0.0
    for agent, tokens in step_tokens.items():
        need = tokens * bytes_per_token
        if need > available_bytes:
            raise MemoryError(
                f"one training step of {agent} ({tokens} tokens) needs ~{need / 2**30:.1f} GiB "
                f"of activations, more than the {max(available_bytes, 0) / 2**30:.1f} GiB the "
                f"memory budget leaves; {hint}"
            )
        if groups and used + need <= available_bytes:
            groups[-1].append(agent)
            used += need
        else:
            groups.append([agent])
            used = need
    return groups


def rows_per_forward(
    step_rows: Mapping[str, int],
    row_bytes: float,
    available_bytes: float,
    *,
    hint: str = "",
) -> int | None:
    """How many of one agent's rows a forward may hold so that one agent fits
    ``available_bytes``; ``None`` when every agent's whole step fits.

    Args:
        step_rows: agent -> rows of its largest step.
        row_bytes: activation memory of one (padded) row.
        available_bytes: what a forward's activations may take.
        hint: what to change if one row alone does not fit (named in the error).
    Raises:
        MemoryError: a single row needs more than ``available_bytes``.
    """
    if max(step_rows.values(), default=0) * row_bytes <= available_bytes:
        return None
    fit = int(max(available_bytes, 0) // row_bytes)
    if fit < 1:
        agent = max(step_rows, key=step_rows.__getitem__)
        raise MemoryError(
            f"one training row of {agent} needs ~{row_bytes / 2**30:.1f} GiB of activations, "
            f"more than the {max(available_bytes, 0) / 2**30:.1f} GiB the memory budget "
            f"leaves; {hint}"
        )
    return fit


def step_tokens(batches_by_agent: Mapping[str, Sequence[Sequence]], width: int) -> dict[str, int]:
    """agent -> rows of its largest step x ``width`` (rows are padded to the longest row
    of the whole step, which may belong to another agent: ``width`` bounds it)."""
    return {a: max(len(b) for b in batches) * width for a, batches in batches_by_agent.items()}


def plan_agent_groups(
    engine, data: Mapping[str, Sequence], config, budget_gb: float
) -> tuple[list[list[str]], int | None]:
    """The groups of agents in ``data`` that one batched pass each may train in ``budget_gb``,
    and the rows per forward (``None``: whole steps) that lets one agent fit.

    Args:
        engine: the MultiLoraEngine holding every agent's adapter (already in memory).
        data: agent -> its SftExamples.
        config: the BatchedSftConfig (batch size, epochs, shuffle seed).
        budget_gb: the whole process's peak memory budget, in GB (1e9 bytes).
    """
    from trainer.distill_batched import agent_batches

    width = max(len(e.prompt_ids) + len(e.completion_ids) for ex in data.values() for e in ex)
    per_token = activation_bytes_per_token(engine.model.config, engine.shape.rank, width)
    batches = {a: agent_batches(data[a], config, a) for a in data}
    # Training adds a gradient and two AdamW moments for every stacked LoRA tensor.
    lora = sum(layer.lora_A.numel() + layer.lora_B.numel() for layer in engine.layers.values())
    release_free_memory()
    available = budget_gb * 1e9 - current_rss_bytes() - 3 * FLOAT_BYTES * lora - PASS_FIXED_BYTES
    hint = "shorten the rows or raise distill.memory_budget_gb"
    rows = {a: max(len(b) for b in agent_steps) for a, agent_steps in batches.items()}
    per_forward = rows_per_forward(rows, width * per_token, available, hint=hint)
    if per_forward is not None:
        batches = {a: [b[:per_forward] for b in agent_steps] for a, agent_steps in batches.items()}
    groups = plan_groups(step_tokens(batches, width), per_token, available, hint=hint)
    return groups, per_forward


def read_plan(path: Path, agents: Sequence[str]) -> tuple[list[list[str]], int | None] | None:
    """The groups and rows per forward an earlier process planned for exactly ``agents``
    (in order) and saved at ``path`` with :func:`write_plan`; None if there is none or it
    is for other agents. A plan written before rows were split has whole steps."""
    if not path.is_file():
        return None
    from trainer.run_dir import read_json

    saved = read_json(path)
    if saved.get("agents") != list(agents):
        return None
    return [list(group) for group in saved["groups"]], saved.get("rows_per_forward")


def write_plan(
    path: Path,
    agents: Sequence[str],
    groups: Sequence[Sequence[str]],
    rows_per_forward: int | None = None,
) -> None:
    """Keep a pass's groups (and rows per forward), so that a resumed process trains the
    same groups the same way.

    The plan counts the memory the process already holds (:func:`current_rss_bytes`),
    and a resumed process holds less than one that has just played a rollout: planned
    afresh, it could group agents differently, which changes float32 rounding."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        path,
        {
            "agents": list(agents),
            "groups": [list(g) for g in groups],
            "rows_per_forward": rows_per_forward,
        },
    )


def train_within_budget(
    engine,
    data: Mapping[str, Sequence],
    config,
    pad_token_id: int,
    budget_gb: float,
    label: str,
    on_step: Callable[[dict[str, float]], None] | None = None,
    on_group: Callable[[list[str], object], None] | None = None,
    skip: Callable[[list[str]], bool] | None = None,
    plan_file: Path | None = None,
):
    """:func:`trainer.distill_batched.train_batched_sft` on ``data`` in the agent groups
    :func:`plan_agent_groups` allows (with a step's rows split over several forwards
    where one agent's step alone does not fit); each agent's training is its own, so
    grouping changes only float32 rounding. ``plan_file`` keeps the groups: a process that finds
    it (a resumed run) trains the groups saved there instead of planning again.
    ``on_step`` is passed to every group's training;
    ``on_group(agents, result)`` is called as soon as a group is trained, with that
    group's ``BatchedSftResult``, so that its adapters can be saved before the next
    group starts (a run killed later keeps them). Groups for which ``skip(agents)`` is
    true are planned but not trained (their adapters were saved by an earlier process).

    Returns:
        ``(result, groups)``: every agent's record in one ``BatchedSftResult`` (tokens
        summed) and the number of groups.
    """
    from trainer import distill_batched

    plan = read_plan(plan_file, list(data)) if plan_file is not None else None
    if plan is None:
        plan = plan_agent_groups(engine, data, config, budget_gb)
        if plan_file is not None:
            write_plan(plan_file, list(data), *plan)
    groups, per_forward = plan
    merged = distill_batched.BatchedSftResult()
    for k, group in enumerate(groups):
        if skip is not None and skip(group):
            continue
        part = distill_batched.train_batched_sft(
            engine,
            {a: data[a] for a in group},
            config,
            pad_token_id=pad_token_id,
            label=label if len(groups) == 1 else f"{label} group {k}",
            on_step=on_step,
            rows_per_forward=per_forward,
        )
        if on_group is not None:
            on_group(group, part)
        merged.losses.update(part.losses)
        merged.grad_norms.update(part.grad_norms)
        merged.tokens += part.tokens
        merged.tokens_saved.update(part.tokens_saved)
    return merged, len(groups)
