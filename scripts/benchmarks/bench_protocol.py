"""End to end: one generation of the published naming-game protocol, phase by phase.

``make bench-protocol`` runs generations 0 and 1 of ``configs/naming_game/ashery2025.yaml``
(24 agents, 40 rounds; override with ``--set key=value``) as the three steps of
``folkways step`` in this process and reports, per generation and phase (rollout with its probe,
distillation, the probe/record step), the wall time, the peak resident memory
(``VmHWM``, reset between phases through ``/proc/self/clear_refs``) and the fraction
of the FLOP floor reached: model FLOPs the phase could not avoid (2 x parameters per
token of a forward, 6 x per training token) over the measured fp32 matmul rate; above
1 where the prefix cache and shared heads skip work the floor counts; and the fraction
of the matmul rate the phase reached on the work it executed (``executed_fraction``:
the decoder layers' matmuls over the positions they ran, counted by :class:`DecoderWork`,
2 x their parameters per position, 4 x with gradients). The projection
for 10 generations is the first plus 9 x the second (generation 0 alone probes the
initial adapters; issue #13's goal: under 2 hours on a 2-core AMD EPYC). Run it on an
otherwise idle machine.

    python scripts/benchmarks/bench_protocol.py --out benchmarks/results.json
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import targets  # noqa: E402
from common import machine, matmul_gflops  # noqa: E402

from trainer.malloc import reexec_under_tcmalloc  # noqa: E402

CONFIG = ROOT / "configs" / "naming_game" / "ashery2025.yaml"


def reset_peak_rss() -> None:
    """Make VmHWM restart from the current RSS (Linux: clear_refs value 5)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_rss_gb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024**2
    return float("nan")


class DecoderWork:
    """Counts the token positions the base decoder runs, with and without gradients.

    Installed by wrapping the decoder class's ``forward`` (instrumentation only: the call
    and its result are unchanged). Padded positions count: they are computed. A position
    run with gradients enabled is a training position: its forward and the backward to
    its input (LoRA trains no base weight, so no weight gradient) cost 2 x 2 x the
    decoder's parameters; one run without costs 2 x. The output head and attention scores
    are not counted, so the executed FLOPs this gives are a lower bound.
    """

    def __init__(self, decoder_class: type) -> None:
        import torch

        self.inference = self.training = 0
        original = decoder_class.forward

        def counted(module, *args, **kwargs):
            ids = kwargs.get("input_ids", args[0] if args else None)
            if ids is None:
                ids = kwargs["inputs_embeds"]
            positions = int(ids.shape[0] * ids.shape[1])
            if torch.is_grad_enabled():
                self.training += positions
            else:
                self.inference += positions
            return original(module, *args, **kwargs)

        self._restore = lambda: setattr(decoder_class, "forward", original)
        decoder_class.forward = functools.wraps(original)(counted)

    def remove(self) -> None:
        """Put the decoder's own ``forward`` back."""
        self._restore()

    def take(self) -> tuple[int, int]:
        """``(inference, training)`` positions since the last call."""
        counts = (self.inference, self.training)
        self.inference = self.training = 0
        return counts


def prompt_tokens(exp, tokenizer, generation: int) -> int:
    """Tokens of every recorded decision's prompt (the rollout's forward work), rendered
    as the population renders them (chat template with the assistant header)."""
    from societies.transcripts import read_decisions

    texts = (
        tokenizer.apply_chat_template(
            [m.to_dict() for m in d.messages], tokenize=False, add_generation_prompt=True
        )
        for d in read_decisions(exp.layout.transcripts(generation))
    )
    return sum(len(tokenizer(t, add_special_tokens=False).input_ids) for t in texts)


def train_tokens(run_dir: Path, generation: int) -> tuple[int, int]:
    """Training tokens of the generation's distillation and those shared heads spared."""
    from trainer.run_dir import RunLayout

    layout = RunLayout(run_dir)
    total = saved = 0
    for record in (layout.generation(generation) / "adapters").glob("*/training.json"):
        outcome = json.loads(record.read_text())
        total += outcome.get("train_tokens", 0)
        saved += int(outcome.get("metrics", {}).get("shared_prefix_tokens_saved", 0))
    return total, saved


def run(overrides: list[str], out_dir: Path, generations: int = 2) -> dict:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from trainer.config import load_experiment
    from trainer.distill_shared_prefix import decoder_of
    from trainer.generation_loop import Experiment
    from trainer.steps import prepare_run, run_step

    overrides = [f"run.output_dir={out_dir}", f"run.generations={generations}", *overrides]
    config = load_experiment(CONFIG, overrides)
    run_dir = prepare_run(CONFIG, overrides)
    exp = Experiment.from_run_dir(run_dir, progress=False)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(exp.model_path))
    params = sum(p.numel() for p in model.parameters())
    decoder = decoder_of(model)
    layer_params = sum(p.numel() for p in decoder.layers.parameters())
    work = DecoderWork(type(decoder))
    del model, decoder
    gflops = matmul_gflops()
    timed = []
    for g in range(generations):
        phases = {}
        for step in ("rollout", "distill", "probe"):
            reset_peak_rss()
            work.take()
            start = time.perf_counter()
            run_step(run_dir, step, g, progress=True)
            seconds = time.perf_counter() - start
            inference, training = work.take()
            executed = 2 * layer_params * inference + 4 * layer_params * training
            phases[step] = {
                "seconds": seconds,
                "peak_rss_gb": peak_rss_gb(),
                "decoder_positions": inference,
                "decoder_training_positions": training,
                # the decoder layers' matmuls this phase ran, over the measured rate
                "executed_fraction": executed / (gflops * 1e9 * seconds),
            }
        timed.append(phases)
    tokenizer = AutoTokenizer.from_pretrained(exp.model_path)
    per_generation = []
    for g, phases in enumerate(timed):
        rollout_tokens = prompt_tokens(exp, tokenizer, g)
        trained, saved = train_tokens(run_dir, g)
        floors = {
            "rollout": 2 * params * rollout_tokens,
            # the floor of the work as posed: cached and shared heads run below it
            "distill": 6 * params * trained,
            "probe": 0,  # its probe repeats the rollout's first call: counted there
        }
        for step, flops in floors.items():
            phases[step]["floor_seconds"] = flops / (gflops * 1e9)
            phases[step]["floor_fraction"] = (
                phases[step]["floor_seconds"] / phases[step]["seconds"] if flops else None
            )
        per_generation.append(
            {
                "generation": g,
                "phases": phases,
                "rollout_prompt_tokens": rollout_tokens,
                "train_tokens": trained,
                "shared_prefix_tokens_saved": saved,
                "seconds": sum(p["seconds"] for p in phases.values()),
            }
        )
    # Generation 0 also probes the initial adapters; later ones reuse the previous
    # generation's probe, so 10 generations = the first + 9 x the last measured.
    first, last = per_generation[0]["seconds"], per_generation[-1]["seconds"]
    projected = first + 9 * last if generations > 1 else 10 * first
    return {
        "config": str(CONFIG.relative_to(ROOT)),
        "overrides": overrides[2:],
        "agents": config.population.size,
        "rounds": config.game.rounds,
        "backend": config.distill.backend.value,
        "memory_budget_gb": config.distill.memory_budget_gb,
        "parameters": params,
        "decoder_layer_parameters": layer_params,
        "matmul_gflops": gflops,
        "generations": per_generation,
        "peak_rss_gb": max(
            p["peak_rss_gb"] for gen in per_generation for p in gen["phases"].values()
        ),
        "distill_peak_rss_gb": max(
            gen["phases"]["distill"]["peak_rss_gb"] for gen in per_generation
        ),
        "train_tokens": sum(gen["train_tokens"] for gen in per_generation),
        "shared_prefix_tokens_saved": sum(
            gen["shared_prefix_tokens_saved"] for gen in per_generation
        ),
        "projected_10_generations_seconds": projected,
        "goal_10_generations_seconds": 2 * 3600,
        "met": projected <= 2 * 3600,
    }


def main() -> int:
    # Under the allocator `folkways` itself runs under (trainer/malloc.py).
    reexec_under_tcmalloc()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument(
        "--generations", type=int, default=2, help="generations to time (default 2)"
    )
    parser.add_argument("--out", default=None, help="merge into this results JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-protocol-") as tmp:
        result = {"machine": machine(), **run(args.overrides, Path(tmp), args.generations)}
    print(json.dumps(result, indent=2))
    if args.out:
        targets.merge(args.out, "end_to_end", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
