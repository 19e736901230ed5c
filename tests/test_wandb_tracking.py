"""W&B offline: a real run directory with the generation metrics and adapter artifacts;
an experiment's runs as one group, with their job types, config keys and step metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from societies.metrics import success_rate
from societies.transcripts import read_decisions
from tests.conftest import QUICKSTART, run_tiny, tiny_overrides, wandb_offline_environment
from trainer.cli import main
from trainer.tracking import MetricRecord
from trainer.wandb_settings import (
    adapter_artifact_name,
    flatten_config,
    has_wandb_credentials,
    resolve_mode,
)
from trainer.wandb_tracking import JobType, WandbTracker

OFFLINE = {"run.generations": 1, "tracking.wandb": "offline", "tracking.project": "folkways-test"}


def test_auto_mode_is_offline_without_credentials(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.delenv("NETRC", raising=False)
    assert resolve_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_mode("auto") == "online"
    assert resolve_mode("disabled") == "disabled"
    with pytest.raises(ValueError, match="accepted: disabled, offline, online, auto"):
        resolve_mode("sometimes")


def test_online_without_credentials_is_refused_before_any_work(monkeypatch, tmp_path, capsys):
    for name in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "NETRC", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc
    (tmp_path / "home").mkdir()
    out = tmp_path / "runs"
    argv = ["run", str(QUICKSTART), *tiny_overrides(out), "tracking.wandb=online"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "tracking.wandb=online but no W&B credentials" in err and "api.wandb.ai" in err
    assert not out.exists()  # refused before the run directory was written
    # A netrc entry for the configured server (a self-hosted one here) is credentials.
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.org")
    netrc_file = tmp_path / "home" / ".netrc"
    netrc_file.write_text("machine wandb.example.org login user password " + "k" * 40 + "\n")
    netrc_file.chmod(0o600)
    assert has_wandb_credentials()
    monkeypatch.setenv("WANDB_BASE_URL", "https://api.wandb.ai")
    assert not has_wandb_credentials()


def test_offline_run_records_metrics_tables_and_adapter_lineage(
    tiny_model_path, tmp_path, monkeypatch
):
    monkeypatch.setenv("WANDB_SILENT", "true")
    result = run_tiny(tmp_path, **OFFLINE)
    runs = sorted((result.run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    # one W&B run per step of the generation, all in the run's group
    by_type = {read_offline_run(r.parent)["job_type"]: r for r in runs}
    assert len(runs) == 3 and set(by_type) == {"rollout", "distill", "probe"}
    # The offline log is a record stream; logged keys, artifact names, types and
    # metadata strings appear literally in it (wandb 0.31).
    data = by_type["probe"].read_bytes()
    for needle in (
        b"prior_on_majority_after",
        b"success_rate_last",
        b"agents/agent_00/probe_after/prior_on_majority",
        b"transcript",
        b"lora-adapter",
        b"t-agent_03",
        b"generation-0",
        b"initial_adapters/agent_03",
        b"tiny-random",
        b"folkways-test",
    ):
        assert needle in data, needle
    for job_type, log in by_type.items():
        run = read_offline_run(log.parent)
        assert (run["group"], run["name"]) == ("t", f"t-gen000-{job_type}")
        assert run["config"]["run.name"] == "t" and "folkways/differs" not in run["config"]
    # the rollout run has one row per round, with the round's success rate from the
    # transcript; the distill run one row per agent's training
    rollout = read_offline_run(by_type["rollout"].parent)["history"]
    rounds = {}
    for d in read_decisions(result.run_dir / "generation_000" / "transcripts.jsonl"):
        rounds.setdefault(d.round, []).append(d)
    assert [r["round"] for r in rollout] == sorted(rounds)
    assert [r["rollout/success_rate"] for r in rollout] == [
        success_rate(v) for _, v in sorted(rounds.items())
    ]
    distill = read_offline_run(by_type["distill"].parent)["history"]
    assert {k.split("/")[1] for row in distill for k in row if k.startswith("distill/")} == {
        f"agent_{i:02d}" for i in range(4)
    }
    # re-running a finished run starts no new W&B run
    run_tiny(tmp_path, **OFFLINE)
    assert len(sorted((result.run_dir / "wandb").glob("offline-run-*/run-*.wandb"))) == 3


# ----- experiments: groups, job types, config keys, step metrics -----------------------------


def read_offline_run(offline_run):
    """An offline run folder's W&B run record, metric definitions and history rows."""

    from trainer.wandb_sync import read_records

    (log,) = sorted(offline_run.glob("run-*.wandb"))
    run, metrics, history, kinds = None, set(), [], []
    for record in read_records(log):
        kind = record.WhichOneof("record_type")
        kinds.append(kind)
        if kind == "run":
            run = record.run
        elif kind == "metric":
            m = record.metric
            metrics.add((m.name or m.glob_name, m.step_metric or None))
        elif kind == "history":
            row = {
                i.key or ".".join(i.nested_key): json.loads(i.value_json)
                for i in record.history.item
            }
            history.append({k: v for k, v in row.items() if not k.startswith("_")})
    assert run is not None, (log, log.stat().st_size, kinds)
    return {
        "group": run.run_group,
        "job_type": run.job_type,
        "name": run.display_name,
        "config": {u.key: json.loads(u.value_json) for u in run.config.update},
        "metrics": metrics,
        "history": history,
    }


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    """W&B offline and quiet, every file it writes inside tmp_path."""
    for name, value in wandb_offline_environment(tmp_path / "wandb-home").items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    return tmp_path


def _seed_config(root, seed: int, mode: str = "offline"):
    from tests.conftest import QUICKSTART
    from trainer.config import load_experiment

    return load_experiment(
        QUICKSTART,
        [
            f"tracking.wandb={mode}",
            "tracking.project=folkways-test",
            "tracking.group=exp",
            "tracking.differs=[run.seed]",
            f"run.seed={seed}",
            f"run.name=s{seed}",
            f"run.output_dir={root}",
        ],
    )


def _summary(g: int):
    from trainer.summary import GenerationSummary

    return GenerationSummary(
        generation=g,
        game="naming_game",
        rounds=2,
        window=2,
        majority_option="A",
        majority_share=0.75,
        prior_on_majority_before=0.5,
        prior_on_majority_after=0.625,
        prior_entropy_before=1.0,
        prior_entropy_after=0.875,
        option_mass_mean=0.9,
        distilled=1,
        carried_over=0,
        game_metrics={"success_rate_last": 0.5, "convergence_round": None, "majority_name": None},
    )


ROUND_RECORDS = [
    MetricRecord(0, "success_rate", 0.5, "rollout", round=0),
    MetricRecord(0, "success_rate", 1.0, "rollout", round=1),
    MetricRecord(0, "payoff", 0.25, "rollout", agent="agent_01", round=1),
    MetricRecord(0, "success_rate_last", 0.75, "rollout"),  # per generation: the probe's
]


def test_two_seeds_of_one_group_carry_group_job_types_differing_key_and_step_metric(wandb_env):
    """The issue's acceptance test on real offline files: two runs (seeds 0 and 1) of
    the experiment "exp"; seed 0 logs all three steps of generation 0, seed 1 its probe
    through the positional call generation_loop makes today."""
    from trainer.distill_sft import DistillOutcome

    cfg0, cfg1 = _seed_config(wandb_env, 0), _seed_config(wandb_env, 1)
    rollout = WandbTracker.for_step(cfg0, cfg0.run_dir, "rollout", 0)
    rollout.log_rounds(ROUND_RECORDS)
    rollout.finish()
    distill = WandbTracker.for_step(cfg0, cfg0.run_dir, JobType.DISTILL, 0)
    distill.log_distill(
        DistillOutcome("agent_00", "sft", examples=4, losses=[2.0, 1.5, 1.25], train_tokens=96)
    )
    distill.finish()
    probe0 = WandbTracker.for_step(cfg0, cfg0.run_dir, "probe", 0)
    probe0.log_generation(_summary(0), [], [])
    probe0.finish()
    probe1 = WandbTracker(  # as trainer/loop_finish.py calls it
        cfg1.tracking.wandb.value,
        cfg1.tracking.project,
        cfg1.run.name,
        cfg1.run_dir,
        cfg1.to_dict(),
        generation=0,
    )
    probe1.log_generation(_summary(0), [], [])
    probe1.finish()

    runs = {}
    for seed in (0, 1):
        for folder in sorted((wandb_env / f"s{seed}" / "wandb").glob("offline-run-*")):
            run = read_offline_run(folder)
            runs[(seed, run["job_type"])] = run
    assert sorted(runs) == [(0, "distill"), (0, "probe"), (0, "rollout"), (1, "probe")]
    assert {run["group"] for run in runs.values()} == {"exp"}
    assert runs[(0, "rollout")]["name"] == "s0-gen000-rollout"
    assert runs[(1, "probe")]["name"] == "s1-gen000-probe"

    # the config: flattened to dotted keys; only the seed (and the name) differ
    c0, c1 = runs[(0, "probe")]["config"], runs[(1, "probe")]["config"]
    assert (c0["run.seed"], c1["run.seed"]) == (0, 1)
    assert c0["distill.data_policy"] == cfg0.distill.data_policy.value
    assert "distill" not in c0 and "run" not in c0
    assert c0["folkways/differs"] == c1["folkways/differs"] == ["run.seed"]
    assert c0["folkways/generation"] == 0 and c0["tracking.group"] == "exp"
    differing = {k for k in (c0.keys() | c1.keys()) - {"_wandb"} if c0.get(k) != c1.get(k)}
    assert differing == {"run.seed", "run.name"}
    assert len(c0) > 50  # every key of the config tree, not a chosen few

    # define_metric: generation is the x of every per-generation metric; no globs overlap
    for key in ((0, "probe"), (1, "probe")):
        assert runs[key]["metrics"] == {("generation", None), ("*", "generation")}
    assert runs[(0, "rollout")]["metrics"] == {
        ("generation", None),
        ("round", None),
        ("rollout/*", "round"),
    }
    assert runs[(0, "distill")]["metrics"] == {
        ("generation", None),
        ("train_step", None),
        ("train/*", "train_step"),
        ("distill/*", "generation"),
    }

    # what each step logged, row by row
    assert runs[(0, "rollout")]["history"] == [
        {"round": 0, "generation": 0, "rollout/success_rate": 0.5},
        {"round": 1, "generation": 0, "rollout/success_rate": 1.0, "rollout/agent_01/payoff": 0.25},
    ]
    rows = runs[(0, "distill")]["history"]
    assert [(r["train_step"], r["train/agent_00/loss"]) for r in rows[:3]] == [
        (0, 2.0),
        (1, 1.5),
        (2, 1.25),
    ]
    assert rows[3] == {
        "generation": 0,
        "distill/agent_00/examples": 4,
        "distill/agent_00/train_tokens": 96,
        "distill/agent_00/seconds": 0.0,
        "distill/agent_00/loss_first": 2.0,
        "distill/agent_00/loss_last": 1.25,
    }
    (row,) = runs[(1, "probe")]["history"]
    assert row["generation"] == 0 and row["prior_on_majority_after"] == 0.625
    assert row["success_rate_last"] == 0.5 and row["convergence_round"] == -1
    assert "majority_name" not in row  # a tie has no name; -1 would read as a number


def test_finish_returns_once_the_log_is_on_disk(wandb_env):
    """wandb 0.31's ``run.finish`` returns before wandb-core writes the log (often just
    its 7-byte header then); ``WandbTracker.finish`` waits for the exit record."""
    from trainer.wandb_sync import has_exit_record

    cfg = _seed_config(wandb_env, 0)
    for g in range(4):
        tracker = WandbTracker.for_step(cfg, cfg.run_dir, "probe", g)
        log = Path(tracker.run.settings.sync_file)
        tracker.run.log({"generation": g, "x": 1.0})
        tracker.finish()
        assert has_exit_record(log), (g, log.stat().st_size)


def test_disabled_writes_nothing(wandb_env):
    from trainer.distill_sft import DistillOutcome

    cfg = _seed_config(wandb_env, 0, mode="disabled")
    outcome = DistillOutcome("agent_00", "sft", examples=4, losses=[1.0])
    for job_type in JobType:
        tracker = WandbTracker.for_step(cfg, cfg.run_dir, job_type, 0)
        assert not tracker.enabled
        if job_type is JobType.ROLLOUT:
            tracker.log_rounds(ROUND_RECORDS)
            tracker.log_round(2, {"success_rate": 1.0})
        elif job_type is JobType.DISTILL:
            tracker.log_distill(outcome)
        else:
            tracker.log_generation(_summary(0), [], [])
            tracker.log_adapter(agent="agent_00", generation=0, path=wandb_env, metadata={})
        tracker.finish()
    assert list(wandb_env.rglob("*")) == []  # no wandb folder, no run directory, nothing


def test_job_type_and_tracking_keys_are_checked(tmp_path):
    from tests.conftest import QUICKSTART
    from trainer.config import load_experiment
    from trainer.config_loader import ConfigError

    with pytest.raises(ValueError, match=r"job_type='train'; accepted: rollout, distill, probe"):
        WandbTracker("disabled", "p", "r", tmp_path, {}, job_type="train")
    probe = WandbTracker("disabled", "p", "r", tmp_path, {})  # the default: probe
    assert probe.job_type is JobType.PROBE
    with pytest.raises(RuntimeError, match="log_round logs the rollout step.*'probe'"):
        probe.log_round(0, {"success_rate": 1.0})
    with pytest.raises(RuntimeError, match="log_adapter logs the distill or probe step"):
        WandbTracker("disabled", "p", "r", tmp_path, {}, job_type="rollout").log_adapter(
            agent="a", generation=0, path=tmp_path, metadata={}
        )
    with pytest.raises(ConfigError, match="tracking.group=' exp'.*without surrounding spaces"):
        load_experiment(QUICKSTART, ["tracking.group=' exp'"])
    with pytest.raises(ConfigError, match="tracking.differs=.*distinct dotted config keys"):
        load_experiment(QUICKSTART, ["tracking.differs=[run.seed, run.seed]"])
    assert load_experiment(QUICKSTART, []).tracking.group is None


def test_flat_config_and_artifact_names():
    assert flatten_config({"run": {"seed": 3, "name": "x"}, "interventions": [{"kind": "a"}]}) == {
        "run.seed": 3,
        "run.name": "x",
        "interventions": [{"kind": "a"}],
    }
    assert adapter_artifact_name("t", "agent_03") == "t-agent_03"
    long = adapter_artifact_name("r" * 120, "agent_03")
    assert len(long) == 128 and long.endswith("-agent_03")
    assert long != adapter_artifact_name("r" * 119 + "s", "agent_03")  # the hash tells apart


def test_sweep_runs_share_the_experiment_group_and_name_the_differing_keys(tmp_path):
    from tests.conftest import QUICKSTART
    from trainer.sweep_plan import parse_grid, plan_sweep

    base = [f"run.output_dir={tmp_path}", "run.name=t"]
    grid = parse_grid(["game.num_names=6,8", "game.temperature=1.0"])
    plan = plan_sweep(QUICKSTART, grid, 2, base)
    assert len(plan.configs) == 4
    for cfg in plan.configs.values():
        assert cfg.tracking.group == "t-sweep"  # the experiment directory's name
        assert cfg.tracking.differs == ["game.num_names", "run.seed"]  # one temperature
    # a group the user gives wins; one seed does not differ
    plan = plan_sweep(QUICKSTART, grid, 1, [*base, "tracking.group=mine"])
    for cfg in plan.configs.values():
        assert cfg.tracking.group == "mine" and cfg.tracking.differs == ["game.num_names"]


def test_an_offline_run_keeps_wandbs_console_lines_out_and_says_how_to_sync(
    wandb_env, monkeypatch, capfd
):
    """W&B's own ~20-70 lines a run (among them advice to use plain `wandb sync`) are
    silenced unless the user sets WANDB_SILENT; the run says how to upload instead."""
    monkeypatch.delenv("WANDB_SILENT")
    out_dir = wandb_env / "runs"
    overrides = tiny_overrides(out_dir, **{"run.generations": 1, "tracking.wandb": "offline"})
    assert main(["run", str(QUICKSTART), *overrides, "--no-progress"]) == 0
    out, err = capfd.readouterr()
    run_dir = out_dir / "t"
    assert list((run_dir / "wandb").glob("offline-run-*"))  # it did track
    assert "wandb:" not in out + err
    assert f"upload them with `folkways wandb sync {run_dir}`" in out
