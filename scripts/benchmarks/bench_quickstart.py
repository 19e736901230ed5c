"""The quickstart's wall time after set-up: ``folkways run configs/naming_game/quickstart.yaml``.

Runs the README's quickstart command in a subprocess (a fresh interpreter, as a user
runs it) into a temporary output directory and records its wall time, the distillation
backend and the summary table it printed. Merged into the results JSON as
``quickstart``; issue #13's goal is under 3 minutes on a 2-core CPU.

    python scripts/benchmarks/bench_quickstart.py --out benchmarks/results.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
ROOT = Path(__file__).resolve().parents[2]

import targets  # noqa: E402
import yaml  # noqa: E402
from common import machine  # noqa: E402

CONFIG = "configs/naming_game/quickstart.yaml"


def run(overrides: list[str]) -> dict:
    folkways = Path(sys.executable).with_name("folkways")
    with tempfile.TemporaryDirectory(prefix="bench-quickstart-") as tmp:
        command = [str(folkways), "run", CONFIG, f"run.output_dir={tmp}", *overrides]
        start = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
        run_dir = Path(tmp) / "quickstart"
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        # The command re-executes itself under tcmalloc where installed (trainer/malloc.py):
        # its own record says which allocator it ran under, not this process's.
        environment = (run_dir / "environment.jsonl").read_text().splitlines()
        malloc = json.loads(environment[-1])["malloc"]
    backend = config["distill"]["backend"]
    table = done.stdout[done.stdout.index("run directory:") :].strip().splitlines()
    return {
        "command": " ".join(["folkways", "run", CONFIG, *overrides]),
        "seconds": seconds,
        "backend": backend,
        "malloc": malloc,
        "table": table,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the config")
    parser.add_argument("--out", default=None, help="merge into this results JSON")
    args = parser.parse_args()
    ran = run(args.overrides)
    result = {"machine": {**machine(), "malloc": ran.pop("malloc")}, **ran}
    print(json.dumps(result, indent=2))
    if args.out:
        targets.merge(args.out, "quickstart", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
