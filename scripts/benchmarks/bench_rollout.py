"""Benchmarks (a) choice scoring and (b) free-text decode for N agents with distinct adapters.

Six paths, measured in one process on the same prompts so that they compare as ratios:
- ``loop``: one forward (or decode) per agent, PEFT ``set_adapter`` before each;
- ``peft_mixed``: PEFT's mixed-adapter batch (``adapter_names=[...]``);
- ``engine``: :class:`societies.multi_lora.MultiLoraEngine` on rows in a shuffled agent
  order (which it reorders into stack order: no weight gather); ``engine_gather`` keeps
  the shuffled order and gathers the rows' weights once per call; ``engine_ordered``
  gets rows already in stack order;
- ``base``: the base model without adapters, batched.
Decode also runs ``engine_one_adapter``: every row on the same adapter (one slot, no
per-row weights), which splits the engine's cost into the LoRA products themselves
(``base`` vs it) and reading N distinct adapters' factors at every step (it vs
``engine_ordered``). The second part is set against memory bandwidth: every forward
streams all N adapters' factors (the model's weights evict them between steps), and
``decode_adapter_read_seconds`` is their bytes x forwards / the measured read bandwidth
(an estimate, not a bound: on the Intel Xeon the measured difference came out below it).
Every decode path runs the same KV-cached loop (``greedy_or_sampled_decode``), so they
differ only in the model call; ``base_growing_cache`` runs the base model with
transformers' ``DynamicCache`` in place of the loop's preallocated one.

Usage: python scripts/benchmarks/bench_rollout.py --n-agents 24 --prompt-len 122 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from common import (
    FLOPS_PER_TOKEN,
    distinct_peft_model,
    load_base,
    machine,
    matmul_gflops,
    memory_gbps,
    prompts,
    save_adapters,
    timed,
    timed_interleaved,
)

from societies.model_store import prepare_embedded
from societies.multi_lora import MultiLoraEngine, greedy_or_sampled_decode, left_padded_positions


def run(
    n_agents: int = 24,
    prompt_len: int = 122,
    repeats: int = 2,
    decode_tokens: int = 32,
    model_path: str | None = None,
    skip_loop_decode: bool = False,
    seed: int = 0,
) -> dict:
    """Measure (a) and (b); returns a JSON-ready dict of rates and ratios."""
    from transformers import AutoTokenizer, DynamicCache

    model_path = str(model_path or prepare_embedded())
    agents = [f"agent{i:03d}" for i in range(n_agents)]
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    tokenizer.padding_side = "left"
    texts = prompts(tokenizer, n_agents, prompt_len)
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    positions = left_padded_positions(enc.attention_mask)
    real_tokens = int(enc.attention_mask.sum())
    singles = [tokenizer([t], return_tensors="pt", add_special_tokens=False) for t in texts]

    peft_model = distinct_peft_model(model_path, agents, seed=seed)
    base = load_base(model_path)
    with tempfile.TemporaryDirectory() as tmp:
        engine = MultiLoraEngine.from_adapter_dirs(
            load_base(model_path), save_adapters(peft_model, agents, Path(tmp))
        )
    # A round pairs agents in random order: rows are a permutation of the stack.
    order = torch.randperm(n_agents, generator=torch.Generator().manual_seed(seed))
    shuffled_names = [agents[i] for i in order]

    def fwd(model, **kw):
        with torch.inference_mode():
            return model(
                input_ids=enc.input_ids,
                attention_mask=enc.attention_mask,
                position_ids=positions,
                logits_to_keep=1,
                **kw,
            ).logits

    # The engine reorders a shuffled batch into stack order; these variants keep the
    # caller's order and gather each row's weights once per call instead (the layout a
    # batch of a subset of agents gets), to show what the layout costs.
    def gathered_forward():
        with torch.inference_mode(), engine.select(order):
            return fwd(engine.model)

    def gathered_decode(tokens):
        with torch.inference_mode(), engine.select(order):
            return greedy_or_sampled_decode(engine.model, enc.input_ids, enc.attention_mask, tokens)

    def loop_score():
        with torch.inference_mode():
            for agent, single in zip(agents, singles, strict=True):
                peft_model.set_adapter(agent)
                peft_model(**single, logits_to_keep=1)

    # Sanity: the engine's numbers are PEFT's (recorded, so a fast wrong engine shows).
    peft_logits = fwd(peft_model, adapter_names=shuffled_names)
    engine_logits = engine.forward(enc.input_ids, enc.attention_mask, order, positions)
    max_abs_diff = float((peft_logits - engine_logits).abs().max())

    choice_paths = {
        "loop": loop_score,
        "peft_mixed": lambda: fwd(peft_model, adapter_names=shuffled_names),
        "engine": lambda: engine.forward(enc.input_ids, enc.attention_mask, order, positions),
        "engine_gather": lambda: gathered_forward(),
        "engine_ordered": lambda: engine.forward(
            enc.input_ids, enc.attention_mask, torch.arange(n_agents), positions
        ),
        "base": lambda: fwd(base),
    }
    for fn in choice_paths.values():
        fn()  # warm-up
    choice_seconds = timed_interleaved(choice_paths, repeats)

    def decode(model, ids, mask, tokens=decode_tokens, **kw):
        with torch.inference_mode():
            return greedy_or_sampled_decode(model, ids, mask, tokens, **kw)

    def loop_decode():
        for agent, single in zip(agents, singles, strict=True):
            peft_model.set_adapter(agent)
            decode(peft_model, single.input_ids, single.attention_mask)

    ids, mask = enc.input_ids, enc.attention_mask
    paths = {
        "peft_mixed": lambda t: decode(peft_model, ids, mask, t, adapter_names=shuffled_names),
        "engine": lambda t: engine.generate(ids, mask, order, t),
        "engine_gather": lambda t: gathered_decode(t),
        "engine_ordered": lambda t: engine.generate(ids, mask, torch.arange(n_agents), t),
        "engine_one_adapter": lambda t: engine.generate(
            ids, mask, torch.zeros(n_agents, dtype=torch.long), t
        ),
        "base": lambda t: decode(base, ids, mask, t),
        # transformers' growing cache, which copies every layer's cache at each step:
        # what the decode loop's preallocated cache saves (societies/decoding.py).
        "base_growing_cache": lambda t: decode(base, ids, mask, t, cache=DynamicCache()),
    }
    for fn in paths.values():
        fn(2)  # warm-up on a short decode: the prompts' prefill shapes are already warm
    decode_seconds = timed_interleaved(
        {path: (lambda fn=fn: fn(decode_tokens)) for path, fn in paths.items()}, repeats
    )
    if not skip_loop_decode:
        # The slowest path: one repeat after a one-agent warm-up is enough for a ratio.
        decode(peft_model, singles[0].input_ids, singles[0].attention_mask)
        decode_seconds["loop"] = timed(loop_decode, 1, warmup=0)

    gflops = matmul_gflops()
    gbps = memory_gbps()
    # All N adapters' factors (the engine's stacks, without padding slots).
    adapter_bytes = sum(
        (layer.lora_A[:n_agents].numel() + layer.lora_B[:n_agents].numel())
        * layer.lora_A.element_size()
        for layer in engine.layers.values()
    )
    choice = {}
    for path, s in choice_seconds.items():
        flops = real_tokens * FLOPS_PER_TOKEN / s
        choice[path] = {
            "decisions_per_s": n_agents / s,
            "seconds": s,
            "roofline_fraction": flops / (gflops * 1e9),
        }
    decode_out = {}
    for path, s in decode_seconds.items():
        generated = n_agents * decode_tokens
        flops = (real_tokens + generated) * FLOPS_PER_TOKEN / s
        decode_out[path] = {
            "tokens_per_s": generated / s,
            "seconds": s,
            "roofline_fraction": flops / (gflops * 1e9),
        }
    for path in choice:
        choice[path]["vs_loop"] = choice_seconds["loop"] / choice_seconds[path]
        choice[path]["vs_base"] = choice_seconds["base"] / choice_seconds[path]
    for path in decode_out:
        decode_out[path]["vs_base"] = decode_seconds["base"] / decode_seconds[path]
        if "loop" in decode_seconds:
            decode_out[path]["vs_loop"] = decode_seconds["loop"] / decode_seconds[path]
    return {
        "n_agents": n_agents,
        "prompt_tokens_mean": real_tokens / n_agents,
        "padded_len": int(ids.shape[1]),
        "decode_tokens": decode_tokens,
        "repeats": repeats,
        "matmul_gflops": gflops,
        "memory_gbps": gbps,
        "adapter_bytes": adapter_bytes,
        # One read per forward: the prompt's and one per further decoded token.
        "decode_adapter_read_seconds": decode_tokens * adapter_bytes / (gbps * 1e9),
        "engine_vs_peft_max_abs_logit_diff": max_abs_diff,
        "choice": choice,
        "decode": decode_out,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-agents", type=int, default=24)
    parser.add_argument("--prompt-len", type=int, default=122)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--decode-tokens", type=int, default=32)
    parser.add_argument("--skip-loop-decode", action="store_true")
    args = parser.parse_args()
    result = run(
        args.n_agents,
        args.prompt_len,
        args.repeats,
        args.decode_tokens,
        skip_loop_decode=args.skip_loop_decode,
    )
    print(json.dumps({"machine": machine(), "rollout": result}, indent=2))


if __name__ == "__main__":
    main()
