"""Run every benchmark in one process, write JSON and print a markdown table.

``make bench`` calls: python scripts/benchmarks/run_all.py --out benchmarks/results.json
Default runtime is ~15 minutes on 2 cores. Sections measured by ``make bench-protocol``
(``end_to_end``, ``quickstart``) are kept when the file is from the same CPU, and the
targets table (scripts/benchmarks/targets.py) is judged from everything in the file. The benchmarks are ratios measured in one
run: absolute rates on a shared machine move between runs (on the 2-core AMD EPYC, up
to ~15% within a day and ~2x between days).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import targets  # noqa: E402
import torch  # noqa: E402
from common import machine, markdown_table  # noqa: E402

from trainer.malloc import reexec_under_tcmalloc  # noqa: E402


def _fmt(x: float, digits: int = 2) -> str:
    return f"{x:.{digits}f}"


def tables(results: dict) -> str:
    """The README's tables from a results dict."""
    m = results["machine"]
    out = [
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, {m['threads']} threads, fp32."
    ]
    roll = results.get("rollout")
    if roll:
        out.append(
            f"\nN={roll['n_agents']} agents with distinct r=8 all-linear adapters, "
            f"prompts ~{roll['prompt_tokens_mean']:.0f} tokens, {roll['decode_tokens']} decoded tokens; "
            f"matmul roofline {roll['matmul_gflops']:.0f} GFLOP/s; "
            + (
                f"memory read bandwidth {roll['memory_gbps']:.0f} GB/s; "
                if "memory_gbps" in roll
                else ""
            )
            + f"engine vs PEFT max |logit diff| {roll['engine_vs_peft_max_abs_logit_diff']:.1e}.\n"
        )
        rows = []
        labels = {
            "loop": "per-agent loop (PEFT set_adapter)",
            "peft_mixed": "PEFT mixed batch",
            "engine": "multi-LoRA engine (shuffled rows, reordered)",
            "engine_gather": "multi-LoRA engine (shuffled rows, weights gathered)",
            "engine_ordered": "multi-LoRA engine (rows in stack order)",
            "engine_one_adapter": "multi-LoRA engine, one adapter on every row",
            "base": "base model, no adapters",
            "base_growing_cache": "base model, growing KV cache (DynamicCache)",
        }
        for path, label in labels.items():
            c, d = roll["choice"].get(path), roll["decode"].get(path)
            if not (c or d):
                continue  # a path an older results file did not measure
            rows.append(
                [
                    label,
                    _fmt(c["decisions_per_s"]) if c else "-",
                    _fmt(c["vs_loop"]) + "x" if c else "-",
                    f"{100 * c['vs_base']:.0f}%" if c else "-",
                    f"{100 * c['roofline_fraction']:.0f}%" if c else "-",
                    _fmt(d["tokens_per_s"], 1) if d else "-",
                    f"{100 * d['vs_base']:.0f}%" if d else "-",
                    f"{100 * d['roofline_fraction']:.0f}%" if d else "-",
                ]
            )
        out.append(
            markdown_table(
                [
                    "path",
                    "choice decisions/s",
                    "vs loop",
                    "vs base",
                    "of roofline",
                    "decode tok/s",
                    "vs base",
                    "of roofline",
                ],
                rows,
            )
        )
    prefix = results.get("prefix")
    if prefix:
        out.append(
            f"\nPrefix reuse (choice scoring, N={prefix['n_agents']}, {prefix['prefix_tokens']:.0f} of "
            f"~{prefix['prompt_tokens_mean']:.0f} prompt tokens cached per agent; max |logprob diff| "
            f"cached vs uncached {prefix['max_abs_logprob_diff']:.1e}):\n"
        )
        rows = [
            [
                "per-agent loop (engine, one row per call)",
                _fmt(prefix["loop_decisions_per_s"]),
                "1.00x",
            ],
            [
                "engine, batched, uncached",
                _fmt(prefix["uncached_decisions_per_s"]),
                _fmt(prefix["uncached_decisions_per_s"] / prefix["loop_decisions_per_s"]) + "x",
            ],
            [
                "engine, batched, cached prefix",
                _fmt(prefix["cached_decisions_per_s"]),
                _fmt(prefix["cached_vs_loop"]) + "x",
            ],
        ]
        out.append(markdown_table(["path", "decisions/s", "vs loop"], rows))
        ceiling = prefix.get("cached_flop_ceiling_vs_loop")
        if ceiling is not None:
            out.append(
                f"\nCeiling of the cached path at the measured matmul rate "
                f"({prefix['matmul_gflops']:.0f} GFLOP/s, decoder FLOPs only): {ceiling:.2f}x the loop."
            )
    distill = results.get("distill")
    if distill:
        out.append(
            f"\nDistillation, N={distill['n_agents']} agents x {distill['examples_per_agent']} examples, "
            f"{distill['epochs']} epoch(s), batch {distill['batch_size']}:\n"
        )
        rows = [
            [
                label,
                _fmt(distill[k]["tokens_per_s"], 1),
                _fmt(distill[k]["seconds"], 1),
                _fmt(distill["trl_sequential"]["seconds"] / distill[k]["seconds"]) + "x",
                f"{distill[k]['final_loss_mean']:.4f}",
            ]
            for k, label in (
                ("trl_sequential", "TRL SFTTrainer, one run per agent"),
                ("batched_plain", "batched multi-adapter, every row whole"),
                ("batched", "batched multi-adapter, shared prompt heads"),
            )
            if k in distill
        ]
        out.append(
            markdown_table(["path", "train tokens/s", "seconds", "vs TRL", "mean final loss"], rows)
        )
        out.append(
            f"\nPrompts ~{distill.get('prompt_tokens_mean', 0):.0f} tokens; shared heads spare "
            f"{100 * distill.get('shared_prefix_saved_share', 0):.0f}% of the training tokens. "
            f"Per-agent final losses differ from TRL's by at most "
            f"{distill['final_loss_max_abs_diff']:.1e}."
        )
    layout = results.get("lora_layout")
    if layout:
        out.append(
            "\nLoRA down-projection layout (SmolLM2-135M shapes, r=8, 30 layers x 7 linears; "
            "ms per pass of the adapter path, the base linears for scale):\n"
        )
        out.append(
            markdown_table(
                ["pass", "plain bmm(x, A)", "transposed (LoraDown)", "speedup", "base linears"],
                [
                    [
                        f"{name}: {p['slots']} slot(s) x {p['tokens_per_slot']} tokens"
                        + (", forward + backward" if p["backward"] else ", forward"),
                        f"{p['plain_ms_per_pass']:.0f}",
                        f"{p['transposed_ms_per_pass']:.0f}",
                        _fmt(p["speedup"]) + "x",
                        f"{p['base_linears_ms_per_pass']:.0f}",
                    ]
                    for name, p in ((k, layout[k]) for k in ("training", "rollout"))
                ],
            )
        )
    memory = results.get("memory")
    if memory:
        out.append(
            "\nPeak RSS holding N adapters (r=8 all-linear, embedded model, one 8-row forward):\n"
        )
        out.append(
            markdown_table(
                ["N agents", "peak RSS (MB)", "stacked adapters (MB)"],
                [
                    [r["n_agents"], f"{r['peak_rss_mb']:.0f}", f"{r['adapter_mb']:.0f}"]
                    for r in memory
                ],
            )
        )
    return "\n".join(out)


def show(path: Path) -> str:
    """A results file's tables and its targets, judged by today's targets.py: another
    machine's details (the README shows the AMD EPYC's) without measuring anything."""
    if not path.is_file():
        raise SystemExit(f"--show {path}: no such results file (e.g. benchmarks/results.json)")
    results = json.loads(path.read_text())
    return tables(results) + "\n\n" + targets.markdown(targets.evaluate(results))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--show", type=Path, help="print a results file's tables and targets; measure nothing"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results.json"))
    parser.add_argument("--n-agents", type=int, default=24)
    parser.add_argument("--prompt-len", type=int, default=122)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--decode-tokens", type=int, default=32)
    parser.add_argument("--memory-n", type=int, nargs="*", default=[8, 64, 256])
    parser.add_argument("--distill-agents", type=int, default=8)
    parser.add_argument("--distill-examples", type=int, default=16)
    parser.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=["rollout", "prefix", "distill", "lora_layout", "memory"],
    )
    args = parser.parse_args(argv)
    if args.show:
        print(show(args.show))
        return
    # Under the allocator `folkways` itself runs under (trainer/malloc.py).
    reexec_under_tcmalloc()

    torch.manual_seed(0)
    results: dict = {"machine": machine(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    start = time.perf_counter()
    if "rollout" not in args.skip:
        import bench_rollout

        results["rollout"] = bench_rollout.run(
            args.n_agents, args.prompt_len, args.repeats, args.decode_tokens
        )
    if "prefix" not in args.skip:
        import bench_prefix

        results["prefix"] = bench_prefix.run(args.n_agents, args.repeats)
    if "distill" not in args.skip:
        import bench_distill

        results["distill"] = bench_distill.run(args.distill_agents, args.distill_examples)
    if "lora_layout" not in args.skip:
        import bench_lora_layout

        results["lora_layout"] = bench_lora_layout.run(max(5, 2 * args.repeats))
    if "memory" not in args.skip and args.memory_n:
        import bench_memory

        results["memory"] = bench_memory.run(args.memory_n)
    results["total_seconds"] = time.perf_counter() - start
    # Keep what `make bench-protocol` measured (end_to_end, quickstart) on this machine.
    if args.out.exists():
        previous = json.loads(args.out.read_text())
        for key in ("end_to_end", "quickstart"):
            kept = previous.get(key, {})
            if kept.get("machine", {}).get("cpu") == results["machine"]["cpu"]:
                results[key] = kept
    results["targets"] = targets.evaluate(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(tables(results))
    print("\n" + targets.markdown(results["targets"]))
    print(f"\n(total {results['total_seconds']:.0f} s; JSON in {args.out})")


if __name__ == "__main__":
    main()
