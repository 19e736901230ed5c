"""Shared-prefix training: the prompt head an agent's rows share is run once per step.

The rows of one agent's mini-batch usually begin with the same tokens: the system
message and the game's rules, ~90 of ~200 tokens in the naming game. The plain step
runs every row through the decoder from token 0. This step runs each agent's shared
head once, with gradients, keeps its keys and values, and runs only the rows' tails,
each attending to its agent's head (the idea of Hydragen's shared-prefix attention,
Juravsky et al. 2024, and of prefix-grouped policy-gradient training). Gradients flow
back through the cached keys and values into the head's forward, summed over the rows
that used it, so loss and gradients equal the plain step's up to float rounding
(tests/test_distill_shared_prefix.py).

Each agent's head is the longest prefix all its rows in the step share, stopped one
token short of its shortest prompt so that every completion token is predicted by the
tail pass. It depends on that agent's rows alone, so an agent trains the same whoever
shares its step (memory groups, Slurm task groups). Heads of different lengths are
right-padded in the head pass; a tail row attends to its own head's real tokens only
and continues its rotary positions from the head's length, as in the whole row.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from societies.multi_lora import MultiLoraEngine


def common_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    """Length of the longest prefix every sequence in ``rows`` starts with."""
    first = rows[0]
    length = min(len(r) for r in rows)
    for r in rows[1:]:
        k = 0
        while k < length and r[k] == first[k]:
            k += 1
        length = k
    return length


def shared_head_length(rows: Sequence) -> int:
    """The head length of one agent's rows (``SftExample``s) in a step; 0 if none.

    A lone row's head is its prompt but the last token: nothing is saved, but the agent
    is computed the same way whatever the number of its rows.
    """
    return max(
        0,
        min(
            common_prefix_length([r.prompt_ids for r in rows]),
            min(len(r.prompt_ids) for r in rows) - 1,
        ),
    )


def decoder_of(model: nn.Module) -> nn.Module:
    return model.get_decoder() if hasattr(model, "get_decoder") else model.model


def hidden_after_shared_heads(
    engine: MultiLoraEngine,
    heads: Sequence[Sequence[int]],
    head_agents: torch.Tensor,
    row_head: torch.Tensor,
    row_agents: torch.Tensor,
    tails: torch.Tensor,
    tail_mask: torch.Tensor,
    pad_token_id: int,
) -> torch.Tensor:
    """Decoder output of the tail positions, every row attending to its agent's head.

    Args:
        heads: one non-empty head per agent, run under ``head_agents`` ``[A]``.
        row_head: ``[B]`` which head each tail row continues.
        row_agents: ``[B]`` the adapter of each tail row (``head_agents[row_head]``).
        tails: ``[B, S]`` right-padded tail tokens; ``tail_mask`` marks the real ones.

    Returns:
        ``[B, S, hidden]``: the plain forward's hidden states at the tail positions.
    """
    from transformers import DynamicCache

    lengths = torch.tensor([len(h) for h in heads])
    width = int(lengths.max())
    head_ids = torch.full((len(heads), width), pad_token_id, dtype=torch.long)
    for a, head in enumerate(heads):
        head_ids[a, : len(head)] = torch.tensor(head)
    head_mask = (torch.arange(width) < lengths[:, None]).long()
    decoder = decoder_of(engine.model)
    with engine.select(head_agents), engine.peft_disabled():
        head_cache = decoder(
            input_ids=head_ids, attention_mask=head_mask, use_cache=True
        ).past_key_values
    # Each row gets its head's keys and values; the gather is differentiable, so the rows'
    # gradients add up in the head's forward. index_select, not ``keys[row_head]``: its
    # backward is an index_add, where advanced indexing's is an accumulating index_put
    # that took 1.26 ms against 0.05 ms for one layer's keys of an 8-row step. One
    # protocol agent's 16 examples trained in 5.96 s against 6.25 s (medians of 8, two
    # processes each, alternated; 2-core Intel Xeon, torch 2.13, tcmalloc).
    cache = DynamicCache(config=getattr(engine.model, "config", None))
    for layer, cached in enumerate(head_cache.layers):
        keys = cached.keys.index_select(0, row_head)
        cache.update(keys, cached.values.index_select(0, row_head), layer)
    mask = torch.cat([head_mask[row_head], tail_mask], dim=1)
    positions = lengths[row_head][:, None] + torch.arange(tails.shape[1])
    with engine.select(row_agents), engine.peft_disabled():
        return decoder(
            input_ids=tails,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
        ).last_hidden_state
