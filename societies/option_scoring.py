"""Sequence scoring of choice options that are more than one token ("30%", "Strongly agree").

An option's log-probability is the sum of its tokens' log-probabilities given the prompt,
teacher-forced: ``log p(o) = sum_j log p(o_j | prompt, o_<j)``. The model's choice among
the options is then the renormalised ``softmax(log p(o))``, as for single-token options
(where the sum has one term and this is the next-token distribution).

Tokens at the boundary: an option is tokenized on its own (``add_special_tokens=False``,
as the single-token path does) and appended to the prompt's tokens, which end with the
chat template's assistant header: the option is what the assistant would write first.
That equals the tokenization of the joined text ``prompt + option`` unless the option's
first characters merge with the header's last ones; with the SmolLM2 template (header
``<|im_start|>assistant\\n``) this happens only for options starting with whitespace after
the newline (``" "``, ``"  two"``). :func:`check_boundary` tests each option against the
prompt's header and raises for such options instead of scoring a tokenization the model
would never see. The header is the text from the prompt's last added (special) token on:
HF tokenizers split added tokens off before any merge, so nothing earlier can merge with
the option.

Design: the prompt is encoded once per request, and every option continues from its KV.

1. **Prompt pass**: one left-padded forward over the (at most ``batch_size``) requests'
   prompts, each row under its agent's adapter, keeping the KV cache. The last-token
   logits give every option's first-token log-probability. With the prefix cache on, this
   pass is :meth:`PrefixCache.forward_with_cache`: the agent's system-message KV comes
   from the cache and only the rest of the prompt is run.
2. **Continuation passes**: one row per (request, option) with two or more tokens, at
   most ``batch_size`` rows per forward. Each row's KV is its request's prompt KV
   (``index_select`` on the batch dimension), its input is the option's tokens but the
   last, left-padded among the rows (``[pad | prompt KV | pad | option]``, padding
   masked, positions counted on real tokens as the uncached path does), so every row ends
   at the last column and ``logits_to_keep`` = the longest option's length - 1 gives the
   logits that predict each option's tokens 2..k.

Why not one row per (request, option) over prompt + option: with ``m`` options that runs
every prompt ``m`` times (11× for "0%".."100%"), where here it runs once and the options
add a few tokens each. Memory per forward stays bounded by ``batch_size`` rows: the
prompt pass's KV (``batch_size`` rows) lives while its continuation passes run, each
with at most ``batch_size`` rows of copied prompt KV; logits are ``rows x (k_max - 1) x
vocabulary`` floats, small for option texts (a few tokens).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from societies.decoding import left_padded_positions

ModelCall = Callable[..., object]
"""``call(agents, input_ids, attention_mask, position_ids, past_key_values, logits_to_keep)``:
one forward with ``use_cache=True``, row ``b`` under agent ``agents[b]``'s adapter; returns
the model output (``.logits``, ``.past_key_values``). See :func:`model_call`."""


@dataclass(frozen=True)
class PromptPass:
    """Prompts run once, kept to continue from.

    Attributes:
        logits: next-token logits at each prompt's last token, ``[R, V]``.
        cache: the prompts' ``DynamicCache`` (``W`` columns per row, padding included).
        mask: ``[R, W]``, 1 on real cached columns.
    """

    logits: torch.Tensor
    cache: object
    mask: torch.Tensor


def score_sequences(population, requests: Sequence) -> list[torch.Tensor]:
    """Summed option log-probabilities (float64) of at most ``batch_size`` requests.

    Args:
        population: the :class:`societies.population.PopulationModel` (engine, tokenizer,
            prefix cache).
        requests: ``ChoiceRequest`` s, any of whose options may be several tokens.
    """
    texts = [population.render(r.messages) for r in requests]
    options = [[population.option_tokens(o) for o in r.options] for r in requests]
    for text, request, row_options in zip(texts, requests, options, strict=True):
        for option, ids in zip(request.options, row_options, strict=True):
            check_boundary(population.tokenizer, text, option, ids, population._boundaries_checked)
    agents = [r.agent for r in requests]
    call = model_call(population)
    tokenizer = population.tokenizer
    if population.prefix_cache is not None and all(len(r.messages) > 1 for r in requests):
        full_ids = population._encode_prefixes(requests)
        prompts = PromptPass(*population.prefix_cache.forward_with_cache(agents, full_ids))
    else:
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        positions = left_padded_positions(enc.attention_mask)
        out = call(agents, enc.input_ids, enc.attention_mask, positions, None, 1)
        prompts = PromptPass(out.logits[:, -1, :], out.past_key_values, enc.attention_mask)
    return sequence_logprobs(
        prompts,
        agents,
        options,
        call,
        population.batch_size,
        tokenizer.pad_token_id,
        cache_config=getattr(population.model, "config", None),
    )


def model_call(population) -> ModelCall:
    """The population's engine as a :data:`ModelCall` (stacked multi-LoRA or PEFT)."""
    engine = population.multi_lora

    def call(agents, input_ids, attention_mask, position_ids, past_key_values, logits_to_keep):
        kwargs = dict(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            use_cache=True,
            logits_to_keep=logits_to_keep,
        )
        if engine is None:
            return population.model(**kwargs, adapter_names=list(agents))
        with engine.select(engine.indices(agents)), engine.peft_disabled():
            return engine.model(**kwargs)

    return call


def check_boundary(
    tokenizer,
    prompt_text: str,
    option: str,
    option_ids: Sequence[int],
    checked: set[tuple[str, str]],
) -> None:
    """Raise ``ValueError`` if ``prompt_text + option`` does not tokenize as the prompt's
    tokens followed by ``option_ids`` at the assistant header.

    ``checked`` memoises (header, option) pairs that passed: chat prompts share one header.
    """
    # From the last added token on (the whole text if it has none; rfind gives -1).
    starts = [prompt_text.rfind(t.content) for t in tokenizer.added_tokens_decoder.values()]
    header = prompt_text[max(0, *starts) :]
    if (header, option) in checked:
        return
    alone = tokenizer(header, add_special_tokens=False).input_ids
    joined = tokenizer(header + option, add_special_tokens=False).input_ids
    if joined != alone + list(option_ids):
        raise ValueError(
            f"option {option!r} merges with the end of the prompt {header[-20:]!r}: alone it "
            f"is tokens {list(option_ids)}, after the prompt {joined[len(alone) - 1 :]} "
            f"(from the prompt's last token on); strip leading whitespace from the option"
        )
    checked.add((header, option))


def sequence_logprobs(
    prompt_pass: PromptPass,
    agents: Sequence[str],
    options: Sequence[Sequence[Sequence[int]]],
    call: ModelCall,
    batch_size: int,
    pad_token_id: int,
    cache_config=None,
) -> list[torch.Tensor]:
    """Summed option log-probabilities of each prompt row, float64 (see the module doc).

    Args:
        prompt_pass: the prompts of ``agents`` (one row each), run once.
        agents: the agent (adapter) of each prompt row.
        options: per row, each option's token ids (non-empty).
        call: the engine's forward (:data:`ModelCall`).
        batch_size: most continuation rows per forward.
        pad_token_id: any id; padded positions are masked.
        cache_config: the model config, for ``DynamicCache``.

    Returns:
        per row, a tensor ``[len(options[row])]`` of ``sum_j log p(o_j | prompt, o_<j)``.
    """
    from transformers import DynamicCache

    first = torch.log_softmax(prompt_pass.logits.float(), dim=-1)
    totals = [
        first[row, [ids[0] for ids in row_options]].double()
        for row, row_options in enumerate(options)
    ]
    lengths = prompt_pass.mask.sum(-1)  # real tokens per prompt: the next position id
    # (prompt row, option index, option ids) for every option with tokens after the first
    rows = [
        (row, i, ids)
        for row, row_options in enumerate(options)
        for i, ids in enumerate(row_options)
        if len(ids) > 1
    ]
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        source = torch.tensor([row for row, _, _ in chunk])
        width = max(len(ids) - 1 for _, _, ids in chunk)
        cache = DynamicCache(config=cache_config)
        for layer, cached in enumerate(prompt_pass.cache.layers):
            cache.update(cached.keys[source], cached.values[source], layer)
        input_ids = torch.full((len(chunk), width), pad_token_id, dtype=torch.long)
        tail_mask = torch.zeros((len(chunk), width), dtype=torch.long)
        positions = torch.zeros((len(chunk), width), dtype=torch.long)
        for b, (row, _, ids) in enumerate(chunk):
            fed = ids[:-1]  # the last token is only predicted, never fed
            n = int(lengths[row])
            input_ids[b, width - len(fed) :] = torch.tensor(fed)
            tail_mask[b, width - len(fed) :] = 1
            positions[b, width - len(fed) :] = torch.arange(n, n + len(fed))
        out = call(
            [agents[row] for row, _, _ in chunk],
            input_ids,
            torch.cat([prompt_pass.mask[source], tail_mask], dim=-1),
            positions,
            cache,
            width,
        )
        logprobs = torch.log_softmax(out.logits.float(), dim=-1)  # [rows, width, V]
        for b, (row, i, ids) in enumerate(chunk):
            targets = torch.tensor(ids[1:])
            picked = logprobs[b, width - len(targets) :].gather(-1, targets[:, None])
            totals[row][i] += picked.double().sum()
    return totals
