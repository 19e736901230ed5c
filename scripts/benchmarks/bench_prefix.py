"""Benchmark: choice scoring with each agent's static prompt head cached (prefix reuse).

The published naming game's prompts (common.naming_game_chats: memory of 5, ~230
tokens). Each agent's head is what a run caches: the system message and the rules
paragraph (societies.prefix_cache.static_head_ids). Compares a per-agent loop (each prompt
alone under its adapter), the engine's uncached batched forward and
:class:`societies.prefix_cache.PrefixCache` on the same prompts (the one-off encoding of
the heads is excluded: it is paid once per generation, not per round).

The ceiling: the decoder's matmul FLOPs on the positions the cached path runs (2 x its
parameters per position; the output head and attention not counted), at the measured
matmul rate, against the loop's time: no implementation of this cache beats it.

Usage: python scripts/benchmarks/bench_prefix.py --n-agents 24 --repeats 2
"""

from __future__ import annotations

import argparse
import json

import torch
from common import load_base, machine, matmul_gflops, naming_game_chats, timed_interleaved

from societies.model_store import prepare_embedded
from societies.multi_lora import MultiLoraEngine
from societies.prefix_cache import PrefixCache, static_head_ids, static_prefix_ids


def run(n_agents: int = 24, repeats: int = 2, model_path: str | None = None) -> dict:
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

    _, chats = naming_game_chats(n_agents)
    prompts = [_ids(tokenizer, chat) for chat in chats]
    heads = {
        a: static_head_ids(tokenizer, chat, ids, static_prefix_ids(tokenizer, chat))
        for a, chat, ids in zip(agents, chats, prompts, strict=True)
    }
    head_len = sum(map(len, heads.values())) / n_agents
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
    gflops = matmul_gflops()
    t_uncached, t_cached = seconds["uncached"], seconds["cached"]
    decoder_params = sum(p.numel() for p in engine.model.model.layers.parameters())
    run_positions = sum(len(p) - len(heads[a]) for a, p in zip(agents, prompts, strict=True))
    flop_seconds = 2 * decoder_params * run_positions / (gflops * 1e9)
    return {
        "n_agents": n_agents,
        "prefix_tokens": head_len,
        "prompt_tokens_mean": sum(map(len, prompts)) / n_agents,
        "uncached_decisions_per_s": n_agents / t_uncached,
        "cached_decisions_per_s": n_agents / t_cached,
        "speedup": t_uncached / t_cached,
        "loop_decisions_per_s": n_agents / seconds["loop"],
        "cached_vs_loop": seconds["loop"] / t_cached,
        "matmul_gflops": gflops,
        "cached_flop_ceiling_vs_loop": seconds["loop"] / flop_seconds,
        "max_abs_logprob_diff": diff,
    }


def _ids(tokenizer, messages) -> list[int]:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False).input_ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-agents", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(
        json.dumps(
            {"machine": machine(), "prefix": run(args.n_agents, args.repeats)},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
