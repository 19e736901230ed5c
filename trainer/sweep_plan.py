"""The plan of a sweep: which runs, named how, with which overrides; every one checked.

``--grid key=v1,v2,...`` values are read as YAML, like ``key=value`` overrides (see
trainer.config_loader); each grid point × seed (``run.seed`` + 0..K-1) becomes a run
named from its values (``game.num_names-2__seed-3``) whose config is loaded, and so
checked, before any run starts. :meth:`SweepPlan.manifest` is ``sweep.json``.
Every run gets ``tracking.group`` = the experiment directory's name (the sweep is one
W&B group) and ``tracking.differs`` = the grid keys with several values (and
``run.seed`` when ``--seeds`` > 1).
"""

from __future__ import annotations

import itertools
import json
import re
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from trainer.config_loader import ConfigError, parse_override
from trainer.sweep_aggregates import point_label

if TYPE_CHECKING:
    from trainer.config import ExperimentConfig

MANIFEST_SCHEMA_VERSION = 1
# Keys the sweep itself sets for every run; the message says what to use instead.
RESERVED = {
    "run.seed": "seeds come from --seeds (run.seed=S as an override sets the first one)",
    "run.name": "each run is named from its grid values and seed",
    "run.output_dir": "runs go into the experiment directory (--out)",
}
_MAX_NAME = 120


@dataclass(frozen=True)
class SweepRun:
    """One run of the sweep: a grid point and a seed."""

    name: str
    point: dict[str, Any]
    seed: int
    # all of them: the W&B group's, the sweep's, the grid point's, seed, name, output_dir
    overrides: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SweepPlan:
    """Everything a sweep will run, checked: every run's config loads."""

    config: str
    overrides: list[str]
    grid: dict[str, list[Any]]
    seeds: list[int]
    out: Path
    runs: list[SweepRun]
    tipping_key: str | None = None
    configs: dict[str, ExperimentConfig] = field(default_factory=dict, repr=False)

    def manifest(self) -> dict[str, Any]:
        return {
            "schema_version": MANIFEST_SCHEMA_VERSION,
            "config": self.config,
            "overrides": self.overrides,
            "grid": self.grid,
            "seeds": self.seeds,
            "tipping_key": self.tipping_key,
            "runs": [r.to_dict() for r in self.runs],
        }


def parse_grid(texts: Sequence[str]) -> dict[str, list[Any]]:
    """``["game.num_names=2,4"]`` -> ``{"game.num_names": [2, 4]}``.

    The values are read as one YAML flow list (``[`` + values + ``]``), so each is typed
    like an override value and lists nest: ``game.names=[A, B],[C, D]``.
    """
    grid: dict[str, list[Any]] = {}
    for text in texts:
        key, sep, raw = text.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(
                f"--grid {text!r} is not of the form key=v1,v2,... (e.g. --grid game.num_names=2,4)"
            )
        if key in RESERVED:
            raise ConfigError(f"--grid {key}: the sweep sets {key} itself; {RESERVED[key]}")
        if key in grid:
            raise ConfigError(
                f"--grid {key} is given twice; give all its values once: --grid {key}=v1,v2,..."
            )
        try:
            values = yaml.safe_load(f"[{raw}]")
        except yaml.YAMLError as err:
            problem = " ".join(str(err).split())
            raise ConfigError(
                f"--grid {text!r}: values are not a valid YAML list ({problem}); "
                "expected key=v1,v2,... with YAML values"
            ) from None
        if not values or any(v is None for v in values):
            raise ConfigError(
                f"--grid {text!r} has an empty value; expected key=v1,v2,... (e.g. "
                "--grid game.num_names=2,4)"
            )
        first: dict[str, int] = {}
        for i, value in enumerate(values):
            same = values[first.setdefault(_canonical(value), i)]
            if first[_canonical(value)] != i:
                shown = json.dumps(same), json.dumps(value)
                equal = "" if shown[0] == shown[1] else " are equal"
                raise ConfigError(
                    f"--grid {text!r} repeats a value: {shown[0]} and {shown[1]}{equal} (they "
                    "would be two identical grid points); expected distinct values"
                )
        grid[key] = values
    return grid


def _canonical(value: Any) -> str:
    """A value's identity as a config value: numbers by value (1 and 1.0 are one
    temperature), in nested lists and mappings too; booleans stay apart from 0 and 1."""

    def norm(v: Any) -> Any:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
        if isinstance(v, list):
            return [norm(x) for x in v]
        if isinstance(v, dict):
            return {str(k): norm(x) for k, x in v.items()}
        return v

    return json.dumps(norm(value), sort_keys=True)


def _slug(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return re.sub(r"[^A-Za-z0-9_.]+", "-", text).strip("-") or "x"


def run_name(point: dict[str, Any], seed: int) -> str:
    """A directory name (a valid ``run.name``) from grid values and seed, e.g.
    ``game.num_names-2__seed-3``; very long names keep a hash of the full point."""
    parts = [f"{k}-{_slug(v)}" for k, v in point.items()] + [f"seed-{seed}"]
    name = "__".join(parts)
    if len(name) > _MAX_NAME:
        digest = zlib.crc32(json.dumps([point, seed], sort_keys=True).encode())
        name = f"{name[: _MAX_NAME - 10]}-{digest:08x}"
    return name


def _override(key: str, value: Any) -> str:
    # JSON is YAML: the loader reads the value back exactly (strings stay strings).
    return f"{key}={json.dumps(value)}"


def committed_share_keys(config: ExperimentConfig) -> dict[str, int]:
    """The grid keys that hold a committed minority's share: ``interventions.N.share``
    of each committed_minority intervention, -> N."""
    from trainer.society_configs import InterventionKind

    return {
        f"interventions.{i}.share": i
        for i, iv in enumerate(config.interventions)
        if iv.kind is InterventionKind.COMMITTED_MINORITY
    }


def plan_sweep(
    config_path: str | Path,
    grid: dict[str, list[Any]],
    seeds: int,
    overrides: Sequence[str] = (),
    *,
    out: str | Path | None = None,
    tipping_key: str | None = None,
) -> SweepPlan:
    """Every run of the sweep, each run's config loaded (so checked) before any is run.

    Raises:
        ConfigError: the config, an override or a grid value is wrong (naming it).
        ValueError: ``seeds`` < 1, ``out`` is a file, a bad ``tipping_key``.
    """
    from trainer.config import load_experiment

    path = Path(config_path)
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise ConfigError(
            f"config file {str(config_path)!r} {what}; expected an experiment YAML file, "
            "e.g. configs/naming_game/quickstart.yaml"
        )
    if seeds < 1:
        raise ValueError(f"--seeds={seeds}; expected an integer >= 1")
    overrides = list(overrides)
    base = load_experiment(path, overrides)
    for text in overrides:
        key = ".".join(parse_override(text)[0])
        if key in grid:
            raise ConfigError(
                f"override {text!r} sets the grid key {key}; give its values with --grid only"
            )
    shares = committed_share_keys(base)
    if tipping_key is not None:
        if tipping_key not in grid:
            raise ValueError(
                f"--tipping-key {tipping_key!r} is not a grid key; accepted: "
                + (", ".join(grid) or "none (give the fractions as --grid KEY=f1,f2,...)")
            )
        if tipping_key not in shares:
            raise ValueError(
                f"--tipping-key {tipping_key!r} is not the share of a committed minority; "
                "accepted: "
                + (
                    ", ".join(shares)
                    or "none: the config has no committed_minority intervention (add one "
                    "under interventions:, e.g. configs/naming_game/committed_minority.yaml)"
                )
            )
        for value in grid[tipping_key]:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(
                    f"--tipping-key {tipping_key}: value {value!r} is not a number; "
                    "expected the committed fractions, e.g. --grid KEY=0,0.1,0.2"
                )
    out_dir = Path(out) if out else Path(base.run.output_dir) / f"{base.run.name}-sweep"
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(
            f"--out {out_dir} is a file; expected a folder (created if missing) for the "
            "sweep's runs and aggregates"
        )
    seed_values = [base.run.seed + i for i in range(seeds)]
    # The experiment is one W&B group; the overrides come first, so a user's own
    # tracking.group / tracking.differs (shared or gridded) wins.
    differs = [k for k, values in grid.items() if len(values) > 1]
    differs += ["run.seed"] if seeds > 1 else []
    tracking = [_override("tracking.group", out_dir.resolve().name)]
    tracking += [_override("tracking.differs", differs)] if differs else []
    runs, configs = [], {}
    loaded: dict[str, dict[str, Any]] = {}  # a point's config (but its name) -> the point
    for values in itertools.product(*grid.values()):
        point = dict(zip(grid, values, strict=True))
        for seed in seed_values:
            name = run_name(point, seed)
            if name in configs:  # two values with the same slug, e.g. "a b" and "a-b"
                name = run_name({**point, "_": zlib.crc32(json.dumps(point).encode())}, seed)
            run_overrides = [
                *tracking,
                *overrides,
                *(_override(k, v) for k, v in point.items()),
                f"run.seed={seed}",
                f"run.name={name}",
                _override("run.output_dir", str(out_dir)),
            ]
            try:
                configs[name] = load_experiment(path, run_overrides)
            except ConfigError as err:  # the base config loaded: the grid point is wrong
                raise ConfigError(
                    f"--grid point {point_label(point)} (run {name}): {err}"
                ) from None
            runs.append(SweepRun(name, point, seed, run_overrides))
        # values that differ as YAML may load as one (1 and "1" for a string key)
        config = configs[runs[-1].name].to_dict()
        config["run"].pop("name")
        same = loaded.setdefault(json.dumps(config, sort_keys=True, default=str), point)
        if same is not point:
            raise ConfigError(
                f"--grid points {point_label(same)} and {point_label(point)} load as the "
                "same config (two identical runs per seed); expected grid values that differ "
                "once loaded"
            )
    return SweepPlan(
        str(config_path), overrides, grid, seed_values, out_dir, runs, tipping_key, configs
    )
