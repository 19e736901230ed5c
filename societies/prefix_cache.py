"""Prefix reuse for choice games: each agent's static prompt head encoded once.

In a choice game an agent's prompt is a static head (system message, rules) followed by
a part that changes every round (memory, options). The head's keys and values depend
only on the tokens and on the agent's adapter, so they are computed once per agent per
generation (adapters change only between generations) and every round runs the model on
the changing tail alone, attending to the cached head.

Layout of one batched call (rows = agents of the round, heads of different lengths):

    [pad | head_b (cached KV) | pad | tail_b]     positions: 0..len(head_b)+len(tail_b)-1

Both parts are left-padded, so every row's last token is real and ``logits_to_keep=1``
applies; padding in the middle is masked out, and explicit position ids keep each row's
rotary positions equal to those of the same prompt alone: the scores equal the uncached
path up to fp32 rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from societies.decoding import left_padded_positions
from societies.multi_lora import MultiLoraEngine


@dataclass(frozen=True)
class _CachedPrefix:
    ids: tuple[int, ...]
    keys: tuple[torch.Tensor, ...]  # per layer: [kv_heads, len, head_dim]
    values: tuple[torch.Tensor, ...]


class PrefixCache:
    """Per-agent key/value caches of a static prompt prefix, for one engine.

    Args:
        engine: the multi-LoRA engine whose adapters the prefixes are encoded with.
        pad_token_id: the id used for padding (any id: padded positions are masked).

    Call :meth:`clear` whenever adapters change: cached heads would be stale.
    """

    def __init__(self, engine: MultiLoraEngine, pad_token_id: int = 0) -> None:
        self.engine = engine
        self.pad_token_id = pad_token_id
        self._cache: dict[str, _CachedPrefix] = {}

    def __len__(self) -> int:
        return len(self._cache)

    def clear(self) -> None:
        """Drop every cached prefix (after adapters were trained or reloaded)."""
        self._cache.clear()

    def prefix_ids(self, agent: str) -> tuple[int, ...] | None:
        """The token ids cached for ``agent``, or ``None``."""
        cached = self._cache.get(agent)
        return cached.ids if cached else None

    @torch.inference_mode()
    def encode(self, prefixes: dict[str, Sequence[int]]) -> None:
        """Encode ``{agent: prefix token ids}`` in one batched forward and cache the KV."""
        if not prefixes:
            return
        agents = list(prefixes)
        rows = [list(prefixes[a]) for a in agents]
        empty = [a for a, r in zip(agents, rows, strict=True) if not r]
        if empty:
            raise ValueError(f"prefixes must be non-empty token lists; empty for agents {empty}")
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for b, r in enumerate(rows):
            ids[b, width - len(r) :] = torch.tensor(r)
            mask[b, width - len(r) :] = 1
        with self.engine.select(self.engine.indices(agents)), self.engine.peft_disabled():
            out = self.engine.model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=left_padded_positions(mask),
                use_cache=True,
                logits_to_keep=1,
            )
        layers = out.past_key_values.layers
        for b, (agent, r) in enumerate(zip(agents, rows, strict=True)):
            start = width - len(r)
            self._cache[agent] = _CachedPrefix(
                ids=tuple(r),
                # clone: a slice would keep the whole batch's cache alive.
                keys=tuple(layer.keys[b, :, start:].clone() for layer in layers),
                values=tuple(layer.values[b, :, start:].clone() for layer in layers),
            )

    @torch.inference_mode()
    def forward(self, agents: Sequence[str], input_ids: Sequence[Sequence[int]]) -> torch.Tensor:
        """Next-token logits ``[B, V]`` for full prompts, reusing each agent's cached prefix.

        Args:
            agents: the adapter (agent) of each row; each must have a cached prefix.
            input_ids: each row's full prompt token ids; they must start with the agent's
                cached prefix and continue past it.

        Returns:
            logits at each row's last token, as the uncached forward would give them.
        """
        return self.forward_with_cache(agents, input_ids)[0]

    @torch.inference_mode()
    def forward_with_cache(
        self, agents: Sequence[str], input_ids: Sequence[Sequence[int]]
    ) -> tuple[torch.Tensor, object, torch.Tensor]:
        """:meth:`forward`, also returning the whole prompts' KV to continue from.

        Returns:
            ``(logits [B, V], cache, mask [B, W])``: the ``DynamicCache`` now holds every
            row's head and tail (``W`` columns, padded in the layout above) and ``mask``
            marks its real columns; a continuation appends columns to both and gives its
            tokens positions from ``mask.sum(-1)`` on (multi-token option scoring).
        """
        from transformers import DynamicCache

        if len(agents) != len(input_ids):
            raise ValueError(
                f"need one prompt per agent: {len(agents)} agents, {len(input_ids)} prompts"
            )
        cached, tails = [], []
        for agent, ids in zip(agents, input_ids, strict=True):
            entry = self._cache.get(agent)
            if entry is None:
                raise KeyError(f"no cached prefix for agent {agent!r}; call encode() first")
            n = len(entry.ids)
            if tuple(ids[:n]) != entry.ids or len(ids) <= n:
                raise ValueError(
                    f"prompt of agent {agent!r} does not extend its cached prefix of {n} tokens "
                    f"(prompt has {len(ids)} tokens); re-encode the prefix or use the uncached path"
                )
            cached.append(entry)
            tails.append(list(ids[n:]))
        rows = len(agents)
        head = max(len(e.ids) for e in cached)
        tail = max(len(t) for t in tails)
        num_layers = len(cached[0].keys)
        cache = DynamicCache(config=getattr(self.engine.model, "config", None))
        for layer in range(num_layers):
            k0 = cached[0].keys[layer]
            keys = k0.new_zeros(rows, k0.shape[0], head, k0.shape[-1])
            values = torch.zeros_like(keys)
            for b, entry in enumerate(cached):
                n = len(entry.ids)
                keys[b, :, head - n :] = entry.keys[layer]
                values[b, :, head - n :] = entry.values[layer]
            cache.update(keys, values, layer)
        ids = torch.full((rows, tail), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((rows, head + tail), dtype=torch.long)
        positions = torch.zeros((rows, tail), dtype=torch.long)
        for b, (entry, t) in enumerate(zip(cached, tails, strict=True)):
            n = len(entry.ids)
            ids[b, tail - len(t) :] = torch.tensor(t)
            mask[b, head - n : head] = 1
            mask[b, head + tail - len(t) :] = 1
            positions[b, tail - len(t) :] = torch.arange(n, n + len(t))
        with self.engine.select(self.engine.indices(agents)), self.engine.peft_disabled():
            out = self.engine.model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            )
        return out.logits[:, -1, :], out.past_key_values, mask


def static_head_ids(
    tokenizer, messages: Sequence[dict], full_ids: Sequence[int], system_head: Sequence[int]
) -> list[int]:
    """The static head of one prompt: its system message and the opening paragraph of the
    first user message (a game's rules), as a token prefix of ``full_ids``.

    Decided from the prompt alone, never from earlier prompts, so a resumed run caches
    exactly what the uninterrupted one did. Where the paragraph's tokens do not line up
    with the full prompt's (a BPE merge across the boundary), the head stops at the last
    shared token; it is never shorter than ``system_head`` and never the whole prompt.
    """
    user = next((m["content"] for m in messages[1:] if m["role"] == "user"), "")
    opening, sep, _ = user.partition("\n\n")
    head = list(system_head)
    if sep:
        text = tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=True
        )
        at = text.find(opening + sep)
        if at >= 0:
            ids = tokenizer(
                text[: at + len(opening) + len(sep)], add_special_tokens=False
            ).input_ids
            n = 0
            for a, b in zip(ids, full_ids, strict=False):  # stops at the shorter
                if a != b:
                    break
                n += 1
            if n > len(head):
                head = list(full_ids[:n])
    return head[: len(full_ids) - 1] if len(head) >= len(full_ids) else head


def static_prefix_ids(tokenizer, messages: Sequence[dict], static_messages: int = 1) -> list[int]:
    """Token ids of the first ``static_messages`` chat messages as the full prompt renders them.

    Checks that the rendering of the head is a token prefix of the full prompt (with the
    generation prompt), which chat templates do not promise; raises ``ValueError`` if not.
    """
    if not 0 < static_messages < len(messages):
        raise ValueError(
            f"static_messages must be in [1, {len(messages) - 1}], got {static_messages}"
        )
    full = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    head = tokenizer.apply_chat_template(list(messages[:static_messages]), tokenize=False)
    full_ids = tokenizer(full, add_special_tokens=False).input_ids
    head_ids = tokenizer(head, add_special_tokens=False).input_ids
    if full_ids[: len(head_ids)] != head_ids:
        raise ValueError(
            f"the chat template's rendering of the first {static_messages} message(s) is not a "
            "token prefix of the full prompt; prefix reuse cannot be used with this template"
        )
    return head_ids
