"""Benchmark (d): peak memory (RSS) holding N agents' adapters with the embedded model.

Each N runs in a fresh subprocess so that peaks do not carry over. The adapters are
r=8 all-linear (SmolLM2-135M: ~2.4 M parameters, ~9.8 MB fp32 each), stacked in a
:class:`MultiLoraEngine` and filled with random values (so every page is touched),
then one scoring forward of 8 rows runs.

Usage: python scripts/benchmarks/bench_memory.py --n-agents 8 64 256
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

_CHILD = r"""
import json, sys, torch
sys.path[:0] = {paths!r}
from common import load_base, peak_rss_mb
from societies.model_store import prepare_embedded
from societies.multi_lora import MultiLoraEngine
n, rank = {n}, {rank}
base = load_base(prepare_embedded())
base_rss = peak_rss_mb()
if n == 0:  # the base model alone, same forward
    ids = torch.randint(0, 1000, (8, 122))
    with torch.inference_mode():
        base(input_ids=ids, attention_mask=torch.ones_like(ids), logits_to_keep=1)
    print(json.dumps({{"n_agents": 0, "peak_rss_mb": peak_rss_mb(), "base_rss_mb": base_rss,
                      "adapter_mb": 0.0}})); sys.exit()
engine = MultiLoraEngine.with_zero_adapters(base, [f"a{{i}}" for i in range(n)], rank)
params = 0
for layer in engine.layers.values():
    layer.lora_A.data.normal_(0, 0.02); layer.lora_B.data.normal_(0, 0.02)
    params += layer.lora_A[0].numel() + layer.lora_B[0].numel()
rows = torch.arange(8) % n
ids = torch.randint(0, 1000, (8, 122))
engine.forward(ids, torch.ones_like(ids), rows)
print(json.dumps({{"n_agents": n, "peak_rss_mb": peak_rss_mb(), "base_rss_mb": base_rss,
                  "adapter_params": params, "adapter_mb": n * params * 4 / 2**20}}))
"""


def run(n_agents: list[int], rank: int = 8) -> list[dict]:
    """Peak RSS per N (plus N=0: the base model alone), each in its own process."""
    here = Path(__file__).resolve().parent
    paths = [str(here), str(here.parents[1])]
    results = []
    for n in [0, *n_agents]:
        code = _CHILD.format(paths=paths, n=n, rank=rank)
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=False
        )
        if out.returncode != 0:
            raise RuntimeError(f"memory benchmark for N={n} failed:\n{out.stderr[-2000:]}")
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-agents", type=int, nargs="+", default=[8, 64, 256])
    parser.add_argument("--rank", type=int, default=8)
    args = parser.parse_args()
    print(json.dumps(run(args.n_agents, args.rank), indent=2))


if __name__ == "__main__":
    main()
