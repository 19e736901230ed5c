"""Free-text replies of many agents in one batched decode, each row with its own adapter.

The debate game's turns are free text (DESIGN.md, decision 3): all agents acting in a
round are decoded together (left-padded, KV-cached, per-row LoRA on the stacked
engine or PEFT's mixed batch), sampled from one seeded generator so a replayed round
writes the same replies; greedy at temperature 0 (the held-out probe).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from societies.records import Message


@dataclass(frozen=True)
class TextRequest:
    """Ask ``agent`` to reply to the chat ``messages`` in at most ``max_new_tokens``."""

    agent: str
    messages: tuple[Message, ...]
    max_new_tokens: int


@torch.inference_mode()
def generate_replies(
    population, requests: Sequence[TextRequest], temperature: float, seed: int
) -> list[str]:
    """The reply of every request, decoded in batches of ``population.batch_size`` rows.

    Args:
        population: a :class:`societies.population.PopulationModel`, or a
            :class:`societies.vllm_engine.VllmPopulation`, which decodes with vLLM
            (its own per-row seeds from ``seed``: replays are exact within vLLM only).
        temperature: 0 for greedy decoding, else sampling at this temperature.
        seed: seeds the sampling generator (one per call, so a replay is exact).
    """
    from societies.decoding import greedy_or_sampled_decode
    from societies.vllm_engine import VllmPopulation

    if isinstance(population, VllmPopulation):  # it has no torch model to decode with
        return population.generate_replies(requests, temperature, seed)
    tokenizer = population.tokenizer
    generator = torch.Generator().manual_seed(seed % 2**63)
    replies: list[str] = []
    for start in range(0, len(requests), population.batch_size):
        chunk = requests[start : start + population.batch_size]
        texts = [population.render(r.messages) for r in chunk]
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        budget = max(r.max_new_tokens for r in chunk)
        kwargs = dict(temperature=temperature, generator=generator, eos_token_id=_eos(tokenizer))
        agents = [r.agent for r in chunk]
        if population.multi_lora is not None:
            engine = population.multi_lora
            tokens = engine.generate(
                enc.input_ids, enc.attention_mask, engine.indices(agents), budget, **kwargs
            )
        else:
            tokens = greedy_or_sampled_decode(
                population.model,
                enc.input_ids,
                enc.attention_mask,
                budget,
                adapter_names=agents,
                **kwargs,
            )
        for request, row in zip(chunk, tokens, strict=True):
            ids = row[: request.max_new_tokens].tolist()
            replies.append(tokenizer.decode(ids, skip_special_tokens=True).strip())
    return replies


def _eos(tokenizer) -> int | None:
    """The chat model's end-of-turn token (SmolLM2: <|im_end|>), else its eos."""
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(end_of_turn, int) and end_of_turn != tokenizer.unk_token_id:
        return end_of_turn
    return tokenizer.eos_token_id
