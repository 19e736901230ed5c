"""Handlers of the ``folkways`` core commands (run, probe, report, person-situation,
compare, release, model prepare): each turns parsed arguments into one call of the
package that does the work and prints its result. The parser is in :mod:`trainer.cli`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def cmd_run(args: argparse.Namespace) -> int:
    from trainer.config_loader import ConfigError
    from trainer.generation_loop import run_experiment
    from trainer.summary import format_table

    config = Path(args.config)
    if not config.is_file():
        what = "is a directory" if config.is_dir() else "does not exist"
        raise ConfigError(
            f"config file {args.config!r} {what}; expected an experiment YAML file, "
            "e.g. configs/naming_game/quickstart.yaml"
        )
    result = run_experiment(args.config, args.overrides, progress=not args.no_progress)
    if args.json:
        print(
            json.dumps(
                {
                    "run_dir": str(result.run_dir),
                    "skipped": result.skipped,
                    "generations": [s.to_dict() for s in result.summaries],
                },
                indent=2,
            )
        )
    else:
        print(f"\nrun directory: {result.run_dir}")
        print(format_table(result.summaries))
        if any((result.run_dir / "wandb").glob("offline-run-*")):
            print(
                f"W&B offline runs in {result.run_dir / 'wandb'}; upload them with "
                f"`folkways wandb sync {result.run_dir}`"
            )
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    from trainer.probe_command import format_priors, format_traits, probe_run, trait_run

    if args.traits:
        generation, profiles = trait_run(Path(args.run_dir), args.generation, args.traits)
        if args.json:
            payload = {a: p.to_dict() for a, p in profiles.items()}
            print(json.dumps({"generation": generation, "traits": payload}, indent=2))
        else:
            print(format_traits(generation, profiles))
        return 0

    generation, priors = probe_run(Path(args.run_dir), args.generation, args.orders)
    if args.json:
        print(
            json.dumps(
                {"generation": generation, "priors": {a: p.to_dict() for a, p in priors.items()}},
                indent=2,
            )
        )
    else:
        print(format_priors(generation, priors))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from trainer.report import make_report
    from trainer.summary import format_table

    if args.more_runs:
        from trainer.multi_report import compare_runs, format_rows

        if not args.out:
            raise ValueError("report of several run directories needs --out DIR for its figure")
        comparison = compare_runs([Path(args.run_dir), *map(Path, args.more_runs)], Path(args.out))
        _print_report(comparison, args.json, lambda: format_rows(comparison.rows))
        return 0
    report = make_report(Path(args.run_dir), Path(args.out) if args.out else None)
    _print_report(report, args.json, lambda: format_table(report.summaries))
    return 0


def _print_report(report, as_json: bool, table) -> None:
    """A report (one run or a comparison) as JSON, or as its table and figure paths."""
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(table())
        print("figures: " + ", ".join(map(str, report.figures)))


def cmd_person_situation(args: argparse.Namespace) -> int:
    from trainer.person_situation import person_situation, write_person_situation
    from trainer.run_dir import open_run_dir

    layout = open_run_dir(Path(args.run_dir))
    done = layout.completed_generations()
    if not done:
        raise FileNotFoundError(
            f"{args.run_dir} has no completed generation yet; nothing to measure (resume "
            "it with `folkways run`, or pass a run directory with a finished generation)"
        )
    generations = args.generation if args.generation else done
    missing = sorted(set(generations) - set(done))
    if missing:
        raise ValueError(
            f"--generation {missing}: not complete in {args.run_dir}; complete: {done}"
        )
    results = [
        person_situation(Path(args.run_dir), g, contexts=args.contexts, seed=args.seed)
        for g in generations
    ]
    saved = write_person_situation(Path(args.run_dir), results)  # for `folkways report`
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        print(
            "generation | option | share agent (person) | share context (situation) | interaction"
        )
        for r in results:
            v = r.variance
            if v.flat:
                print(
                    f"{r.generation} | {r.option} | no variance to split: every agent in "
                    "every context gives the same value (to float32 rounding)"
                )
                continue
            print(
                f"{r.generation} | {r.option} | {v.share_agent:.3f} | {v.share_context:.3f} | "
                f"{v.share_residual:.3f}"
            )
        print(f"saved: {saved}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from trainer.compare import METHODS, run_comparison, summarize

    if args.seeds < 1:
        raise ValueError(f"--seeds={args.seeds}; expected an integer >= 1")
    methods = args.methods.split(",") if args.methods else list(METHODS)
    out = Path(args.out) if args.out else Path("runs") / f"compare-{Path(args.config).stem}"
    rows = run_comparison(
        args.config,
        args.overrides,
        args.seeds,
        out,
        methods=methods,
        llm_rl_rounds=args.llm_rl_rounds,
        progress=not args.json,
    )
    if args.json:
        print(json.dumps(summarize(rows, [m for m in METHODS if m in methods]), indent=2))
    else:
        print((out / "compare.md").read_text())
        print(f"figure: {out / 'compare.png'}")
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    from trainer.release import (
        EXIT_PUSH_FAILED,
        PushError,
        check_repo_id,
        push_release,
        release_adapter,
    )

    if args.private and not args.push:
        raise ValueError("--private applies to --push REPO_ID; add --push or drop --private")
    if args.push:
        check_repo_id(args.push)  # before any work: a typo must not cost a release
    release = release_adapter(
        Path(args.run_dir), args.agent, Path(args.out), args.generation, args.full_precision_base
    )
    record = release.to_dict()
    if not args.json:
        steps = " -> ".join(f"{e.operation}" for e in release.lineage)
        print(
            f"released {release.agent} (generation {release.generation}, base {release.base_model}) to {release.path}"
        )
        print(f"lineage: {steps}")
        shift = record["full_precision_prior_shift"]
        if shift["measured"]:
            print(f"prior shift on the full-precision base: TV {shift['total_variation']:.3f}")
        elif release.base_weights.gguf is not None:
            print(f"prior shift on the full-precision base: {shift['reason']}")
    status = 0
    if args.push:
        try:
            record["pushed"] = push_release(release.path, args.push, private=args.private)
            if not args.json:
                print(f"uploaded to {record['pushed']}")
        except PushError as err:
            record["pushed"], record["push_error"] = None, str(err)
            print(f"folkways: error: {err}", file=sys.stderr)
            status = EXIT_PUSH_FAILED
    if args.json:
        print(json.dumps(record, indent=2))
    return status


def cmd_model_prepare(args: argparse.Namespace) -> int:
    from societies.model_store import prepare_embedded, prepare_tiny_random

    cache = Path(args.cache_dir) if args.cache_dir else None
    # The tiny random model (tests, smoke runs) costs 0.2 s once the embedded one exists.
    paths = {
        "embedded": str(prepare_embedded(cache)),
        "tiny-random": str(prepare_tiny_random(cache)),
    }
    print(
        json.dumps(paths, indent=2)
        if args.json
        else "\n".join(f"{k}: {v}" for k, v in paths.items())
    )
    return 0
