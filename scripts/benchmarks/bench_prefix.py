"""Benchmark: choice scoring with each agent's static prompt head cached (prefix reuse).

The system message carries the game's rules (static for a generation); the user message
the per-round memory. Compares a per-agent loop (each prompt alone under its adapter),
the engine's uncached batched forward and :class:`societies.prefix_cache.PrefixCache`
on the same prompts (the one-off encoding of the heads is excluded: it is paid once per
generation, not per round).

Usage: python scripts/benchmarks/bench_prefix.py --n-agents 24 --prompt-len 122 --repeats 2
"""

from __future__ import annotations

import argparse
import json

import torch
from common import load_base, machine, timed_interleaved

from societies.model_store import prepare_embedded
from societies.multi_lora import MultiLoraEngine
from societies.prefix_cache import PrefixCache, static_prefix_ids

RULES = (
    "You are playing a game with another villager. Each round you both name the river; "
    "if your names match you both win 100 points, otherwise you lose 50. Answer with a "
    "single capital letter from the options given."
)


def run(
    n_agents: int = 24, prompt_len: int = 122, repeats: int = 2, model_path: str | None = None
) -> dict:
    from transformers import AutoTokenizer

    model_path = str(model_path or prepare_embedded())
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    tokenizer.padding_side = "left"
    agents = [f"agent{i:03d}" for i in range(n_agents)]
    engine = MultiLoraEngine.with_zero_adapters(load_base(model_path), agents, rank=8, scaling=2.0)
    torch.manual_seed(0)
    for layer in engine.layers.values():
        layer.lora_A.data.normal_(0, 0.02)
        layer.lora_B.data.normal_(0, 0.02)

    def chat(i: int, memory_rounds: int):
        memory = " ".join(
            f"Round {k}: you said {chr(65 + (k + i) % 10)}, partner said {chr(66 + k % 9)}."
            for k in range(memory_rounds)
        )
        return [
            {"role": "system", "content": f"Villager {i}. " + RULES},
            {"role": "user", "content": f"Memory: {memory} Options: A B C D E. Your name?"},
        ]

    heads = {a: static_prefix_ids(tokenizer, chat(i, 1)) for i, a in enumerate(agents)}
    head_len = len(heads[agents[0]])
    # Grow the memory until prompts reach about prompt_len tokens.
    rounds = 1
    while len(_ids(tokenizer, chat(0, rounds + 1))) <= prompt_len:
        rounds += 1
    prompts = [_ids(tokenizer, chat(i, rounds - i % 3)) for i in range(n_agents)]
    order = torch.randperm(n_agents, generator=torch.Generator().manual_seed(0)).tolist()
    row_agents = [agents[i] for i in order]
    row_prompts = [prompts[i] for i in order]
    enc = tokenizer.pad({"input_ids": row_prompts}, return_tensors="pt")
    rows = engine.indices(row_agents)

    cache = PrefixCache(engine, pad_token_id=tokenizer.pad_token_id)
    cache.encode(heads)
    uncached = engine.forward(enc.input_ids, enc.attention_mask, rows)[:, -1, :]
    cached = cache.forward(row_agents, row_prompts)
    diff = float((torch.log_softmax(uncached, -1) - torch.log_softmax(cached, -1)).abs().max())
    singles = [torch.tensor([p]) for p in row_prompts]

    def loop():  # one agent at a time, its prompt alone: the per-agent baseline
        for agent_row, ids in zip(rows.tolist(), singles, strict=True):
            engine.forward(ids, torch.ones_like(ids), [agent_row])

    paths = {
        "loop": loop,
        "uncached": lambda: engine.forward(enc.input_ids, enc.attention_mask, rows),
        "cached": lambda: cache.forward(row_agents, row_prompts),
    }
    for fn in paths.values():
        fn()  # warm-up
    seconds = timed_interleaved(paths, repeats)
    t_uncached, t_cached = seconds["uncached"], seconds["cached"]
    return {
        "n_agents": n_agents,
        "prefix_tokens": head_len,
        "prompt_tokens_mean": sum(map(len, prompts)) / n_agents,
        "uncached_decisions_per_s": n_agents / t_uncached,
        "cached_decisions_per_s": n_agents / t_cached,
        "speedup": t_uncached / t_cached,
        "loop_decisions_per_s": n_agents / seconds["loop"],
        "cached_vs_loop": seconds["loop"] / t_cached,
        "max_abs_logprob_diff": diff,
    }


def _ids(tokenizer, messages) -> list[int]:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False).input_ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-agents", type=int, default=24)
    parser.add_argument("--prompt-len", type=int, default=122)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(
        json.dumps(
            {"machine": machine(), "prefix": run(args.n_agents, args.prompt_len, args.repeats)},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
