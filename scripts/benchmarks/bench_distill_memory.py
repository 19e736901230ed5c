"""Peak memory of batched distillation against N agents and the memory budget.

Each (N, budget) runs ``trainer.distill_group.distill_group`` in a fresh subprocess on
the embedded model with the published protocol's shapes (r=8 all-linear adapters,
rows of ~230 tokens, batch 8) and reads the child's own peak RSS (VmHWM, not
ru_maxrss, which a child inherits from its parent).

Usage: python scripts/benchmarks/bench_distill_memory.py --n-agents 2 8 --budgets 4 8
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

_CHILD = r"""
import json, re, sys, tempfile, time
from pathlib import Path
import torch
sys.path[:0] = {paths!r}
import trainer.distill_batched as batched
from societies.model_store import prepare_embedded
from societies.population import LoraSpec, PopulationModel
from trainer.distill_group import distill_group
from trainer.distill_sft import SftSettings
n, budget, rows, epochs = {n}, {budget}, {rows}, {epochs}
model = str(prepare_embedded())
work = Path(tempfile.mkdtemp(prefix="bench-distill-memory-"))
agents = [f"a{{i:02d}}" for i in range(n)]
start = {{}}
population = PopulationModel(model, agents, LoraSpec(r=8, alpha=16), init_seeds={{a: i for i, a in enumerate(agents)}})
for a in agents:
    start[a] = population.save_adapter(a, work / "start" / a)
del population
filler = " ".join(["You remember round k: you said R, your partner said K."] * 16)
examples = [{{"prompt": [{{"role": "system", "content": "Pick one name."}}, {{"role": "user", "content": filler + f" {{j}}"}}],
             "completion": [{{"role": "assistant", "content": "R"}}]}} for j in range(rows)]
groups = []
real = batched.train_batched_sft
def spy(engine, data, *args, **kwargs):
    groups.append(len(data))
    return real(engine, data, *args, **kwargs)
batched.train_batched_sft = spy
began = time.perf_counter()
distill_group(model_path=model, start_adapters=start, examples={{a: examples for a in agents}},
              out_dirs={{a: work / "out" / a for a in agents}},
              settings=SftSettings(epochs=epochs, learning_rate=1e-3, batch_size=8, memory_budget_gb=budget), seed=0)
seconds = time.perf_counter() - began
hwm = int(re.search(r"VmHWM:\s+(\d+)", open("/proc/self/status").read()).group(1)) * 1024
print(json.dumps({{"n_agents": n, "budget_gb": budget, "peak_gb": hwm / 1e9, "groups": groups,
                  "seconds": seconds}}))
"""


def run(n_agents: list[int], budgets: list[float], rows: int = 8, epochs: int = 1) -> list[dict]:
    here = Path(__file__).resolve().parent
    paths = [str(here), str(here.parents[1])]
    results = []
    for budget in budgets:
        for n in n_agents:
            code = _CHILD.format(paths=paths, n=n, budget=budget, rows=rows, epochs=epochs)
            out = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=False
            )
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
    args = parser.parse_args()
    print(json.dumps(run(args.n_agents, args.budgets, args.rows), indent=2))


if __name__ == "__main__":
    main()
