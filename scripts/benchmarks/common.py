"""Shared pieces of the benchmarks: machine description, timing, models, prompts.

Everything here runs only when a benchmark script calls it (no work at import).
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

# One forward token of SmolLM2-135M ~ 2 x parameters FLOPs; an approximation
# (embedding lookups are not matmuls; with logits_to_keep=1 the head runs once per row).
EMBEDDED_PARAMS = 134.5e6
FLOPS_PER_TOKEN = 2 * EMBEDDED_PARAMS


def machine() -> dict:
    """CPU model, cores, torch version and threads: printed above every table."""
    from trainer.malloc import active_malloc
    from trainer.provenance import cpu_model

    return {
        "cpu": cpu_model(),
        "malloc": active_malloc(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "dtype": "float32",
    }


def timed(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timed_interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall seconds per path, the paths run round-robin ``repeats`` times.

    Interleaving spreads a burst of load from another process over all paths instead
    of charging it to whichever path ran at that moment: the ratios stay meaningful on
    a shared machine. Callers warm the paths up first.
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def matmul_gflops(size: int = 1536, repeats: int = 20) -> float:
    """Measured fp32 matmul rate (GFLOP/s): the roofline every path is compared with.

    The best of ``repeats`` runs, not the median: a limit is what the hardware reaches,
    and one slow sample (a timer tick, another process) would otherwise lower the
    roofline and inflate every fraction of it (seen: 152 vs 199 GFLOP/s on one machine).
    """
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def memory_gbps(megabytes: int = 1024, repeats: int = 5) -> float:
    """Measured memory read bandwidth (GB/s): the best of ``repeats`` sums over a buffer
    larger than the caches, the limit for work that streams weights (as decode does).

    On the 2-core Intel Xeon (lscpu: 480 MiB of L3) a 64 MB buffer read at 50 GB/s and
    256 MB to 2 GB ones at 22-26 GB/s (2026-11-28).
    """
    x = torch.ones(megabytes * 2**20 // 4)
    x.sum()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        x.sum()
        best = min(best, time.perf_counter() - start)
    return x.numel() * x.element_size() / best / 1e9


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    Reads ``VmHWM`` from ``/proc/self/status``: ``getrusage``'s ``ru_maxrss`` carries a
    parent's peak over into a subprocess on Linux, which would hide the child's own.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_base(path: str | Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        str(path), dtype=torch.float32, use_safetensors=True
    ).eval()


def distinct_peft_model(
    path: str | Path, agents: list[str], r: int = 8, alpha: int = 16, seed: int = 0
):
    """A PeftModel with one distinct non-zero all-linear adapter per agent.

    PEFT initialises lora_B to zero, which would make every adapter the base model;
    a small random lora_B makes them distinct without changing any cost.
    """
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=r, lora_alpha=alpha, target_modules="all-linear", task_type="CAUSAL_LM")
    torch.manual_seed(seed)
    model = get_peft_model(load_base(path), config, adapter_name=agents[0])
    for agent in agents[1:]:
        model.add_adapter(agent, config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.02)
    return model.eval()


def save_adapters(peft_model, agents: list[str], root: Path) -> dict[str, Path]:
    """Write each adapter as a standard PEFT folder (what the engine loads in a real run)."""
    peft_model.save_pretrained(root, selected_adapters=agents)
    return {agent: root / agent for agent in agents}


def prompts(tokenizer, n: int, length: int) -> list[str]:
    """``n`` chat prompts of about ``length`` tokens, lengths varied by up to ~10% so the
    batch is left-padded as in a real round."""
    rules = (
        "You are playing a game with another villager. Each round you both name the "
        "river; if your names match you both win 100 points, otherwise you lose 50. "
        "Your memory of earlier rounds: "
    )
    history = " ".join(
        f"Round {k}: you said {chr(65 + k % 10)}, partner said {chr(66 + k % 9)}."
        for k in range(200)
    )
    out = []
    for i in range(n):
        target = max(8, length - (i * 7) % max(1, length // 10))
        messages = [
            {"role": "system", "content": f"You are villager number {i}."},
            {"role": "user", "content": rules + history},
        ]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False).input_ids
        # Keep the head (system + rules) and the generation prompt; cut the history.
        tail = tokenizer("<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False).input_ids
        ids = ids[: max(1, target - len(tail))] + tail
        out.append(tokenizer.decode(ids))
    return out


def naming_game_chats(n: int, seed: int = 0) -> tuple[tuple[str, ...], list[list[dict]]]:
    """The names and ``n`` prompts of the published naming game (configs/naming_game/ashery2025.yaml:
    10 letter names shuffled per call, a full memory of 5 interactions), as chat dicts.

    The real prompt text, so a benchmark's shared heads and lengths (~230 tokens, ~90 of
    them system message and rules) are the protocol's.
    """
    import numpy as np

    from societies.games.naming_game import (
        Interaction,
        NamingGame,
        NamingGameRules,
        draw_letter_names,
    )

    rng = np.random.default_rng(seed)
    game = NamingGame(NamingGameRules(draw_letter_names(10, rng), memory=5))
    chats = []
    for _ in range(n):
        memory = []
        for _ in range(5):
            own, partner = rng.choice(game.options, size=2)
            memory.append(Interaction(str(own), str(partner), game.payoff(own, partner)))
        messages = game.prompt(memory, game.shuffled_options(rng))
        chats.append([m.to_dict() for m in messages])
    return game.options, chats


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
