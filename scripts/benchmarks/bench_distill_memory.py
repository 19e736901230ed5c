"""Peak memory of batched distillation against N agents and the memory budget.

Each (N, budget) runs ``trainer.distill_group.distill_group`` in a fresh subprocess on
the embedded model with the published protocol's shapes (r=8 all-linear adapters,
rows of ~230 tokens, batch 8) and reads the child's own peak RSS (VmHWM, not
ru_maxrss, which a child inherits from its parent). ``--row-repeats 30`` makes rows of
~430 tokens, the donor game's, whose 8-row step needs more than a small budget leaves:
the planner then splits each step over forwards (``rows_per_forward`` in the output).
The rows share all of their prompt but the last token (a shared head spares nearly all
of it); ``--distinct-rows`` puts the row's number first, so that they share only the
system message, as the planner's estimate assumes.

Usage: python scripts/benchmarks/bench_distill_memory.py --n-agents 2 8 --budgets 4 8
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

_CHILD = r"""
import json, re, sys, time
from pathlib import Path
import torch
sys.path[:0] = {paths!r}
import trainer.distill_batched as batched
from societies.model_store import prepare_embedded
from societies.population import LoraSpec, PopulationModel
from trainer.distill_group import distill_group
from trainer.distill_sft import SftSettings
n, budget, rows, epochs, repeats, distinct = {n}, {budget}, {rows}, {epochs}, {repeats}, {distinct}
from transformers import AutoTokenizer
model = str(prepare_embedded())
work = Path({work!r})
agents = [f"a{{i:02d}}" for i in range(n)]
start = {{}}
population = PopulationModel(model, agents, LoraSpec(r=8, alpha=16), init_seeds={{a: i for i, a in enumerate(agents)}})
for a in agents:
    start[a] = population.save_adapter(a, work / "start" / a)
del population
filler = " ".join(["You remember round k: you said R, your partner said K."] * repeats)
def text(j):
    return f"Row {{j}}. " + filler if distinct else filler + f" {{j}}"
examples = [{{"prompt": [{{"role": "system", "content": "Pick one name."}}, {{"role": "user", "content": text(j)}}],
             "completion": [{{"role": "assistant", "content": "R"}}]}} for j in range(rows)]
groups, per_forward = [], set()
real = batched.train_batched_sft
def spy(engine, data, *args, **kwargs):
    groups.append(len(data))
    per_forward.add(kwargs.get("rows_per_forward"))
    return real(engine, data, *args, **kwargs)
batched.train_batched_sft = spy
began = time.perf_counter()
distill_group(model_path=model, start_adapters=start, examples={{a: examples for a in agents}},
              out_dirs={{a: work / "out" / a for a in agents}},
              settings=SftSettings(epochs=epochs, learning_rate=1e-3, batch_size=8, memory_budget_gb=budget), seed=0)
seconds = time.perf_counter() - began
hwm = int(re.search(r"VmHWM:\s+(\d+)", open("/proc/self/status").read()).group(1)) * 1024
tokenizer = AutoTokenizer.from_pretrained(model)
row = batched.sft_example_from_chat(tokenizer, examples[0]["prompt"], examples[0]["completion"])
tokens = len(row.prompt_ids) + len(row.completion_ids)
print(json.dumps({{"n_agents": n, "budget_gb": budget, "peak_gb": hwm / 1e9, "groups": groups,
                  "rows_per_forward": sorted(per_forward, key=str), "row_tokens": tokens,
                  "seconds": seconds}}))
"""


def run(
    n_agents: list[int],
    budgets: list[float],
    rows: int = 8,
    epochs: int = 1,
    row_repeats: int = 16,
    distinct_rows: bool = False,
) -> list[dict]:
    here = Path(__file__).resolve().parent
    paths = [str(here), str(here.parents[1])]
    results = []
    for budget in budgets:
        for n in n_agents:
            # The child's scratch folder (its adapters), removed even when it fails.
            work = Path(tempfile.mkdtemp(prefix="bench-distill-memory-"))
            code = _CHILD.format(
                work=str(work),
                paths=paths,
                n=n,
                budget=budget,
                rows=rows,
                epochs=epochs,
                repeats=row_repeats,
                distinct=distinct_rows,
            )
            try:
                out = subprocess.run(
                    [sys.executable, "-c", code], capture_output=True, text=True, check=False
                )
            finally:
                shutil.rmtree(work, ignore_errors=True)
            if out.returncode != 0:
                raise RuntimeError(f"N={n}, budget {budget} GB failed:\n{out.stderr[-2000:]}")
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(json.dumps(results[-1]), file=sys.stderr)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-agents", type=int, nargs="+", default=[2, 8])
    parser.add_argument("--budgets", type=float, nargs="+", default=[4.0, 8.0])
    parser.add_argument("--rows", type=int, default=8, help="examples per agent")
    parser.add_argument(
        "--row-repeats", type=int, default=16, help="filler sentences per row: 16 ~230 tokens"
    )
    parser.add_argument(
        "--distinct-rows", action="store_true", help="rows share only the system message"
    )
    args = parser.parse_args()
    print(
        json.dumps(
            run(
                args.n_agents,
                args.budgets,
                args.rows,
                row_repeats=args.row_repeats,
                distinct_rows=args.distinct_rows,
            ),
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
