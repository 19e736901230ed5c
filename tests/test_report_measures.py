"""``folkways report``'s second figure (drift, influence, person/situation, traits) and
the multi-run labels, on run directories written by hand: every number is known."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import yaml

from societies.measures.drift import js_divergence
from societies.measures.person_situation import decompose
from societies.measures.questionnaire import TraitProfile
from societies.records import AgentPrior, SchemaError
from trainer.drift_metrics import drift_records
from trainer.person_situation import (
    ContextRef,
    PersonSituation,
    read_person_situation,
    write_person_situation,
)
from trainer.report import make_report
from trainer.report_measures import Measures
from trainer.report_measures_plot import measures_figure
from trainer.run_dir import RunLayout
from trainer.summary import GenerationSummary
from trainer.tracking import MetricRecord, write_generation_metrics
from trainer.trait_metrics import trait_records

# Priors over two names: before generation 0, after generation 0, after generation 1.
START = {"a": {"A": 0.5, "B": 0.5}, "b": {"A": 0.9, "B": 0.1}}
AFTER = [
    {"a": {"A": 0.6, "B": 0.4}, "b": {"A": 0.9, "B": 0.1}},
    {"a": {"A": 1.0, "B": 0.0}, "b": {"A": 0.2, "B": 0.8}},
]
# T(source -> target) in bits per generation; "s0" is a scripted seat (no prior).
TE = [
    {("a", "b"): 0.05, ("b", "a"): 0.02},
    {("a", "b"): 0.7, ("b", "a"): 0.1, ("s0", "a"): 0.3},
]
CONFIG = {
    "run": {"name": "x", "output_dir": "runs", "seed": 0, "generations": 2},
    "distill": {"data_policy": "replace", "epochs": 1},
    "probe": {"questionnaire": False, "custom": []},
}


def priors(table: dict[str, dict[str, float]]) -> dict[str, dict]:
    return {a: AgentPrior(a, p, 1.0, 2).to_dict() for a, p in table.items()}


def profile(agent: str, extraversion: float, agreeableness: float) -> TraitProfile:
    traits = {"extraversion": extraversion, "agreeableness": agreeableness}
    return TraitProfile(agent, "ipip_big_five_50", traits, {"1": extraversion}, 0.9, 2)


def make_run(root, config=CONFIG, *, drift=True, influence=True, traits=True):
    """A two-generation naming-game run directory with the records the loop writes."""
    layout = RunLayout(root)
    root.mkdir(parents=True)
    layout.config.write_text(yaml.safe_dump(config))
    every = []
    for g, after in enumerate(AFTER):
        before = START if g == 0 else AFTER[g - 1]
        layout.generation(g).mkdir()
        layout.probes(g).write_text(
            json.dumps({"orders": [], "before": priors(before), "after": priors(after)})
        )
        summary = GenerationSummary(
            generation=g,
            game="naming_game",
            rounds=4,
            window=2,
            majority_option="A",
            majority_share=0.75,
            prior_on_majority_before=sum(p["A"] for p in before.values()) / 2,
            prior_on_majority_after=sum(p["A"] for p in after.values()) / 2,
            prior_entropy_before=0.9,
            prior_entropy_after=0.8,
            option_mass_mean=0.9,
            distilled=2,
            carried_over=0,
        )
        layout.summary(g).write_text(json.dumps(summary.to_dict()))
        records = [MetricRecord(g, "success_rate", 0.5, "rollout", round=r) for r in range(4)]
        if drift:
            gen0 = {a: AgentPrior(a, p, 1.0, 2) for a, p in START.items()}
            now = {a: AgentPrior(a, p, 1.0, 2) for a, p in after.items()}
            records += drift_records(g, now, gen0, "A")
        if influence:
            records += [
                MetricRecord(g, "influence_te_bits", bits, "information", f"{s}->{t}")
                for (s, t), bits in TE[g].items()
            ]
            records.append(MetricRecord(g, "influence_te_mean_bits", 0.5, "information"))
        if traits:
            if g == 0:
                start = {"a": profile("a", 3.0, 3.0), "b": profile("b", 3.0, 3.0)}
                records += trait_records(0, start, phase="traits_before")
            now = {"a": profile("a", 2.0 + g, 3.0), "b": profile("b", 4.0 + g, 3.0)}
            records += trait_records(g, now, phase="traits_after")
        write_generation_metrics(layout.generation_metrics(g), records)
        layout.complete(g).write_text("")
        every += records
    # An unfinished generation's influence records: never shown.
    every.append(MetricRecord(2, "influence_te_bits", 0.9, "information", "b->a"))
    write_generation_metrics(layout.metrics, every)
    return root


def shares_result(generation: int, values) -> PersonSituation:
    contexts = tuple(ContextRef(0, j, "a") for j in range(len(values[0])))
    agents = tuple(f"agent_{i}" for i in range(len(values)))
    return PersonSituation(
        "x", generation, "A", agents, contexts, tuple(map(tuple, values)), decompose(values), 0
    )


# x_ij = 5 + a_i + c_j with centred a (SS 3 * 8 = 24) and c (SS 4 * 2 = 8): shares 3/4, 1/4, 0.
ADDITIVE = [[5 + a + c for c in (-1.0, 0.0, 1.0)] for a in (-2.0, 0.0, 0.0, 2.0)]


# --- the numbers ------------------------------------------------------------------------


def test_drift_is_each_agents_js_from_its_generation_0_prior(tmp_path):
    report = make_report(make_run(tmp_path / "run"), tmp_path / "out")
    drift = report.to_dict()["measures"]["drift"]
    assert drift["agents"] == ["a", "b"] and drift["generations"] == [0, 1]
    assert set(drift["sources"].values()) == {"metrics.jsonl"}
    table = drift["js_from_gen0_bits"]
    # a after generation 1: p = (1, 0), q = (1/2, 1/2), m = (3/4, 1/4):
    # JS = (log2(4/3) + (1/2 log2(2/3) + 1/2 log2 2)) / 2 = 3/2 - (3/4) log2 3.
    assert table["a"]["1"] == pytest.approx(1.5 - 0.75 * math.log2(3), abs=1e-9)
    assert table["b"]["0"] == pytest.approx(0.0, abs=1e-12)  # b did not move in generation 0
    assert table["b"]["1"] == pytest.approx(js_divergence(AFTER[1]["b"], START["b"]))
    assert table["a"]["0"] == pytest.approx(js_divergence(AFTER[0]["a"], START["a"]))
    assert drift["population_mean_bits"]["1"] == pytest.approx(
        (table["a"]["1"] + table["b"]["1"]) / 2
    )


def test_drift_records_are_read_and_probes_are_the_fallback(tmp_path):
    run = make_run(tmp_path / "old", drift=False)
    old = make_report(run, tmp_path / "o1").measures.drift
    assert old.sources == ("probes.json", "probes.json")
    assert old.js_bits[0][1] == pytest.approx(1.5 - 0.75 * math.log2(3), abs=1e-9)

    # A recorded value is taken as recorded, not recomputed from the probes.
    layout = RunLayout(run)
    planted = MetricRecord(1, "prior_js_from_gen0_bits", 0.123, "drift", "a")
    write_generation_metrics(layout.metrics, [planted])
    new = make_report(run, tmp_path / "o2").measures.drift
    assert new.sources == ("probes.json", "metrics.jsonl")
    # only a was recorded in generation 1: b has no value there
    assert new.js_bits == ((old.js_bits[0][0], 0.123), (old.js_bits[1][0], None))


def test_influence_matrix_is_the_last_complete_generations_records(tmp_path):
    measures = make_report(make_run(tmp_path / "run"), tmp_path / "out").to_dict()["measures"]
    influence = measures["influence"]
    assert influence["generation"] == 1  # generation 2's record is not complete
    assert influence["agents"] == ["a", "b", "s0"]
    # te_bits[i][j] = T(agents[i] -> agents[j]); unmeasured pairs and the diagonal: null
    assert influence["te_bits"] == [
        [None, 0.7, None],
        [0.1, None, None],
        [0.3, None, None],
    ]


def test_traits_are_the_population_means_and_spreads(tmp_path):
    traits = make_report(make_run(tmp_path / "run"), tmp_path / "out").measures.traits
    assert [(p.stage, p.generation) for p in traits] == [("start", 0), ("after", 0), ("after", 1)]
    # after generation 1: extraversion 3 and 5 -> mean 4, population std 1
    assert traits[2].means == pytest.approx({"extraversion": 4.0, "agreeableness": 3.0})
    assert traits[2].stds == pytest.approx({"extraversion": 1.0, "agreeableness": 0.0})
    assert traits[0].means["extraversion"] == 3.0


def test_person_situation_results_merge_per_generation(tmp_path):
    run = make_run(tmp_path / "run")
    assert read_person_situation(run) == {}
    write_person_situation(run, [shares_result(0, [[0.5, 0.5], [0.5, 0.5]])])
    write_person_situation(run, [shares_result(1, ADDITIVE), shares_result(0, ADDITIVE)])
    stored = read_person_situation(run)
    assert sorted(stored) == [0, 1]
    assert stored[0].values == tuple(map(tuple, ADDITIVE))  # replaced, not kept
    assert not list(run.glob("person_situation.json.tmp-*"))

    (run / "person_situation.json").write_text(json.dumps({"schema_version": 9, "generations": {}}))
    with pytest.raises(SchemaError, match=r"person_situation.json: schema_version=9"):
        read_person_situation(run)


def test_shares_in_the_report_sum_to_one_and_flat_tables_are_null(tmp_path, capsys):
    from trainer.cli import main

    run = make_run(tmp_path / "run")
    write_person_situation(
        run, [shares_result(0, [[0.5, 0.5], [0.5, 0.5]]), shares_result(1, ADDITIVE)]
    )
    assert main(["report", str(run), "--out", str(tmp_path / "out"), "--json"]) == 0
    out = capsys.readouterr().out

    def strict(constant):
        raise AssertionError(f"--json printed {constant}, not standard JSON")

    shares = json.loads(out, parse_constant=strict)["measures"]["person_situation"]
    assert [s["generation"] for s in shares] == [0, 1]
    assert shares[0]["share_agent"] is None  # every cell equal: no variance to share out
    one = shares[1]
    assert (one["share_agent"], one["share_context"]) == pytest.approx((0.75, 0.25))
    assert one["share_agent"] + one["share_context"] + one["share_interaction"] == pytest.approx(1)
    assert (one["agents"], one["contexts"], one["option"]) == (4, 3, "A")


# --- the figure -------------------------------------------------------------------------


def panel_texts(ax) -> str:
    return " ".join(t.get_text() for t in ax.texts)


def test_all_four_panels_draw_their_data(tmp_path):
    import matplotlib.pyplot as plt

    run = make_run(tmp_path / "run")
    write_person_situation(run, [shares_result(0, ADDITIVE), shares_result(1, ADDITIVE)])
    report = make_report(run, tmp_path / "out")
    assert report.figures == [tmp_path / "out/report.png", tmp_path / "out/measures.png"]
    assert (tmp_path / "out/measures.png").read_bytes()[:4] == b"\x89PNG"

    fig = measures_figure(report.measures, "run")
    drift, influence, shares, traits, bar = fig.axes
    # (a) one line per agent and the mean, each from "start" (0 bits) on
    lines = {line.get_label(): line for line in drift.get_lines()}
    assert set(lines) == {"a", "b", "population mean"}
    assert list(lines["a"].get_ydata())[0] == 0.0
    assert list(lines["a"].get_xdata()) == [-1, 0, 1]
    assert "bits" in drift.get_ylabel()
    # (b) one arrow per measured pair (3), three labelled nodes, a colour bar in bits
    assert len(influence.patches) == 3
    assert {t.get_text() for t in influence.texts} == {"a", "b", "s0"}
    assert "bits" in bar.get_ylabel()
    # (c) three stacked parts per generation: agent 0.75, context 0.25, interaction 0
    heights = [round(p.get_height(), 6) for p in shares.patches]
    assert heights == [0.75, 0.75, 0.25, 0.25, 0.0, 0.0]
    # (d) two traits, each with its three points
    assert sorted(t.get_text() for t in traits.get_legend().get_texts()) == [
        "agreeableness",
        "extraversion",
    ]
    assert all(len(c.lines[0].get_xdata()) == 3 for c in traits.containers)
    for ax in (drift, shares, traits):
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    plt.close(fig)


def test_panels_without_data_say_what_is_missing(tmp_path):
    import matplotlib.pyplot as plt

    run = make_run(tmp_path / "run", influence=False, traits=False)
    report = make_report(run, tmp_path / "out")
    assert (report.measures.influence, report.measures.shares, report.measures.traits) == (
        None,
        (),
        (),
    )
    fig = measures_figure(report.measures, "run")
    _, influence, shares, traits = fig.axes  # no colour bar
    assert "No transfer-entropy records" in panel_texts(influence)
    assert "folkways person-situation RUN_DIR" in panel_texts(shares)
    assert "probe.questionnaire=true" in panel_texts(traits)
    plt.close(fig)

    summary = (tmp_path / "out/summary.md").read_text()
    assert "![measures](measures.png)" in summary
    assert "run `folkways person-situation RUN_DIR`" in summary
    assert "`probe.questionnaire=true`" in summary

    fig = measures_figure(Measures(None, None, (), ()), "empty")  # nothing at all
    assert "No priors to compare" in panel_texts(fig.axes[0])
    plt.close(fig)


# --- several runs -----------------------------------------------------------------------


def config_with(**changes) -> dict:
    config = json.loads(json.dumps(CONFIG))
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        config[section][key] = value
    return config


def test_runs_are_labelled_by_the_config_keys_that_differ(tmp_path):
    from trainer.multi_report import compare_runs

    first = make_run(tmp_path / "first", config_with(run__name="first"))
    second = make_run(
        tmp_path / "second",
        config_with(run__name="second", run__output_dir="elsewhere", distill__data_policy="anchor"),
    )
    comparison = compare_runs([first, second], tmp_path / "cmp")
    assert comparison.differing == {"distill.data_policy": {"first": "replace", "second": "anchor"}}
    assert comparison.labels == {
        "first": "distill.data_policy=replace",
        "second": "distill.data_policy=anchor",
    }
    assert json.loads(json.dumps(comparison.to_dict()))["labels"] == comparison.labels
    text = (tmp_path / "cmp/comparison.md").read_text()
    assert "| distill.data_policy | replace | anchor |" in text
    assert "| second | distill.data_policy=anchor |" in text
    assert "| second | 1 |" in text  # the per-generation table

    # Two keys: both named, in key order; booleans as YAML writes them.
    third = make_run(
        tmp_path / "third",
        config_with(run__seed=1, probe__questionnaire=True),
    )
    labels = compare_runs([first, third], tmp_path / "cmp2").labels
    assert labels["third"] == "probe.questionnaire=true, run.seed=1"


def test_equal_configs_fall_back_to_directory_names(tmp_path):
    from trainer.multi_report import compare_runs, differing_keys, run_labels

    a = make_run(tmp_path / "a")
    b = make_run(tmp_path / "b")
    assert compare_runs([a, b], tmp_path / "cmp").labels == {"a": "a", "b": "b"}
    assert "No config key differs" in (tmp_path / "cmp/comparison.md").read_text()

    # a and b equal, c different: a and b would share a label; their names tell them apart.
    c = make_run(tmp_path / "c", config_with(run__seed=3))
    assert compare_runs([a, b, c], tmp_path / "cmp3").labels == {
        "a": "run.seed=0 (a)",
        "b": "run.seed=0 (b)",
        "c": "run.seed=3",
    }

    # A key only newer configs have, equal where present: listed, not in the labels.
    differing = differing_keys(
        {
            "old": {"run.seed": 0},
            "new": {"run.seed": 1, "slurm.launcher": "none"},
            "newer": {"run.seed": 2, "slurm.launcher": "none"},
        }
    )
    assert set(differing) == {"run.seed", "slurm.launcher"}
    assert run_labels(["old", "new", "newer"], differing)["new"] == "run.seed=1"


def test_a_copied_reference_run_gets_its_person_situation_from_the_command(
    reference, tmp_path, capsys
):
    """The command writes person_situation.json; the report reads the same numbers."""
    from trainer.cli import main

    run = tmp_path / "ref"
    shutil.copytree(reference.run_dir, run)
    assert not (run / "person_situation.json").exists()  # the shared run has none
    assert main(["person-situation", str(run), "--generation", "1", "--contexts", "4"]) == 0
    printed = capsys.readouterr().out
    assert f"saved: {run / 'person_situation.json'}" in printed
    stored = read_person_situation(run)
    assert list(stored) == [1]
    (row,) = make_report(run, tmp_path / "out").measures.shares
    v = stored[1].variance
    assert (row.share_agent, row.share_context, row.share_interaction) == (
        v.share_agent,
        v.share_context,
        v.share_residual,
    )
    assert row.share_agent + row.share_context + row.share_interaction == pytest.approx(1)
