"""folkways compare: the society's convergence under the one definition, and a run of
every method on the tiny model, each read back from its run directories."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from tests.conftest import QUICKSTART
from tests.test_data_builders import naming
from trainer.run_outcome import RoundConsensus, consensus_from_decisions, outcome_of

OPTIONS = ("A", "B", "C")
# A comparison small enough for a unit test on the tiny model.
TINY = [
    "model.name_or_path=tiny-random",
    "population.size=4",
    "game.num_names=3",
    "game.rounds=4",
    "game.pairs_per_round=2",
    "probe.orders=3",
    "distill.backend=batched",
    "distill.epochs=1",
    "distill.max_examples=4",
]


def decision(round_, agent, partner, probs, action):
    d = naming(round_, 0, agent, partner, action, action)
    return replace(d, options=OPTIONS, option_probs=probs)


def test_society_convergence_is_every_agents_latest_argmax_agreeing_to_the_end():
    leaning_a, leaning_b = (0.6, 0.3, 0.1), (0.2, 0.7, 0.1)
    decisions = [
        decision(0, "x", "y", leaning_a, "A"),
        decision(0, "y", "x", leaning_b, "B"),  # round 0: x wants A, y wants B
        decision(1, "x", "y", leaning_a, "A"),
        decision(1, "y", "x", leaning_a, "A"),  # round 1: both A
        decision(2, "x", "y", leaning_a, "A"),
        decision(2, "y", "x", leaning_a, "A"),
    ]
    rows = consensus_from_decisions(decisions, ["x", "y"])
    assert rows == [RoundConsensus(0, None), RoundConsensus(1, "A"), RoundConsensus(2, "A")]
    outcome = outcome_of(rows, [0.0, 1.0, 0.5], window=2)
    assert (outcome.converged_round, outcome.winner, outcome.rounds) == (1, "A", 3)
    assert outcome.final_success == pytest.approx(0.75)  # the last two rounds' mean
    # an agent that has not played yet has no choice: no consensus until it plays
    three = consensus_from_decisions(decisions, ["x", "y", "z"])
    assert {r.option for r in three} == {None}
    # consensus lost at the end: never converged
    lost = [*decisions, decision(3, "y", "x", leaning_b, "B")]
    assert outcome_of(consensus_from_decisions(lost, ["x", "y"]), None, 2).winner is None
    # a tie between an agent's two best options is no choice
    tied = [decision(0, "x", "y", (0.4, 0.4, 0.2), "A"), decision(0, "y", "x", leaning_a, "A")]
    assert consensus_from_decisions(tied, ["x", "y"]) == [RoundConsensus(0, None)]


def test_the_converged_round_is_where_the_final_consensus_starts():
    rows = [RoundConsensus(r, o) for r, o in enumerate(["B", "B", "A", None, "A", "A"])]
    assert outcome_of(rows, None, 3).converged_round == 4
    switched = [RoundConsensus(r, o) for r, o in enumerate(["B", "B", "A"])]
    assert (
        outcome_of(switched, None, 3).converged_round,
        outcome_of(switched, None, 3).winner,
    ) == (2, "A")


def test_compare_runs_every_method_and_writes_its_table(tiny_model_path, tmp_path, capsys):
    from trainer.cli import main

    args = ["compare", str(QUICKSTART), *TINY, "--seeds", "2", "--llm-rl-rounds", "6"]
    assert main([*args, "--out", str(tmp_path / "cmp"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert [t["method"] for t in summary] == [
        "in_context",
        "distilled",
        "iql",
        "reinforce",
        "llm_rl",
    ]
    assert all(t["seeds"] == 2 for t in summary)
    data = json.loads((tmp_path / "cmp/compare.json").read_text())
    assert len(data["seeds"]) == 10
    for row in data["seeds"]:
        assert (row["winner"] is None) == (row["converged_round"] is None)
    assert (tmp_path / "cmp/compare.png").stat().st_size > 10_000
    assert "| iql | 2 |" in (tmp_path / "cmp/compare.md").read_text()
    # every row is read back from a run directory, and says what the method itself did
    rows = {(r["method"], r["seed"]): r for r in data["seeds"]}
    for method in ("iql", "reinforce"):
        for own in json.loads((tmp_path / f"cmp/{method}/results.json").read_text()):
            row = rows[method, own["seed"]]
            assert row["final_success"] == pytest.approx(own["final_success"])
            assert (row["rounds"], row["converged_round"], row["winner"]) == (
                own["rounds"],
                own["converged_round"],
                own["winner"],
            )
    for seed in (0, 1):
        own = json.loads((tmp_path / f"cmp/llm_rl/seed_{seed}/result.json").read_text())
        row = rows["llm_rl", seed]
        assert (row["rounds"], row["converged_round"], row["winner"]) == (
            6,
            own["converged_round"],
            own["winner"],
        )
        assert row["final_success"] == pytest.approx(own["final_success"])
    assert {rows["in_context", s]["rounds"] for s in (0, 1)} == {4}  # game.rounds
    assert main([*args[:2], "--methods", "iql,qlearning", "--out", str(tmp_path / "x")]) == 2


def test_every_method_final_success_is_over_the_configs_window(tiny_model_path, tmp_path):
    """metrics.window=3: the society's, the baselines' (default 10) and llm_rl's (default
    4) final success all average the last 3 rounds, and the table says so."""
    from trainer.compare import run_comparison
    from trainer.run_dir import RunLayout
    from trainer.tracking import read_metrics

    overrides = [
        "model.name_or_path=tiny-random",
        "population.size=4",
        "game.num_names=3",
        "game.rounds=5",
        "game.pairs_per_round=2",
        "probe.orders=2",
        "metrics.window=3",
    ]
    out = tmp_path / "cmp"
    rows = run_comparison(
        QUICKSTART,
        overrides,
        1,
        out,
        methods=["in_context", "iql", "llm_rl"],
        llm_rl_rounds=6,
        progress=False,
    )
    dirs = {
        "in_context": out / "society/seed_0",
        "iql": out / "iql/seed_0",
        "llm_rl": out / "llm_rl/seed_0",
    }
    assert {r.method: r.window for r in rows} == dict.fromkeys(dirs, 3)
    for row in rows:
        layout = RunLayout(dirs[row.method])
        saved = json.loads((layout.generation(0) / "summary.json").read_text())
        assert saved["window"] == 3, row.method
        success = sorted(
            (m.round, m.value)
            for m in read_metrics(layout.generation_metrics(0))
            if m.name == "success_rate" and m.phase == "rollout" and m.round is not None
        )
        assert len(success) > 3
        recomputed = sum(v for _, v in success[-3:]) / 3
        assert row.final_success == pytest.approx(recomputed), row.method
    iql_own = json.loads((out / "iql/results.json").read_text())[0]
    assert iql_own["final_success"] == pytest.approx(rows[1].final_success)
    data = json.loads((out / "compare.json").read_text())
    assert [t["final_success_window"] for t in data["summary"]] == [3, 3, 3]
    assert "last N rounds" in (out / "compare.md").read_text()
    assert "(N=3)" in (out / "compare.md").read_text()


@pytest.mark.parametrize("rounds", ["0", "-5"])
def test_llm_rl_rounds_below_one_is_refused_before_anything_runs(tmp_path, capsys, rounds):
    from trainer.cli import main

    out = tmp_path / "cmp"
    argv = ["compare", str(QUICKSTART), "--methods", "iql,llm_rl", "--out", str(out)]
    assert main([*argv, "--llm-rl-rounds", rounds]) == 2
    assert capsys.readouterr().err == (
        f"folkways: error: --llm-rl-rounds={rounds}; expected an integer >= 1 "
        "(default 4 x game.rounds)\n"
    )
    assert not out.exists()  # not even the iql baseline ran


def test_an_intervention_the_baselines_cannot_play_is_refused_before_the_societies_run(
    tmp_path, capsys
):
    from trainer.cli import main

    out = tmp_path / "cmp"
    committed = QUICKSTART.parent / "committed_minority.yaml"
    argv = ["compare", str(committed), "--methods", "in_context,iql", "--out", str(out)]
    assert main(argv) == 2
    assert "interventions=['committed_minority']" in capsys.readouterr().err
    assert not out.exists()  # the in-context society did not run first


def test_on_a_ring_every_method_plays_the_societys_graph(tiny_model_path, tmp_path):
    """network.topology=ring_lattice, k=2, 6 agents: the society, IQL and llm_rl of a
    seed write the same graph.json, and every pair any of them played is a ring edge."""
    from societies.transcripts import read_decisions
    from trainer.compare import run_comparison
    from trainer.run_dir import RunLayout

    overrides = [
        "model.name_or_path=tiny-random",
        "population.size=6",
        "game.num_names=3",
        "game.rounds=3",
        "game.pairs_per_round=3",
        "probe.orders=2",
        "network.topology=ring_lattice",
        "network.k=2",
    ]
    out = tmp_path / "cmp"
    methods = ["in_context", "iql", "llm_rl"]
    rows = run_comparison(
        QUICKSTART, overrides, 1, out, methods=methods, llm_rl_rounds=2, progress=False
    )
    assert [r.method for r in rows] == methods
    ring = {frozenset((f"agent_{i:02d}", f"agent_{(i + 1) % 6:02d}")) for i in range(6)}
    graphs = []
    for run_dir in (out / "society/seed_0", out / "iql/seed_0", out / "llm_rl/seed_0"):
        layout = RunLayout(run_dir)
        graphs.append(json.loads(layout.graph.read_text()))
        decisions = read_decisions(layout.transcripts(0))
        assert decisions and {frozenset((d.agent, d.partner)) for d in decisions} <= ring
    assert graphs[0]["links"] == graphs[1]["links"] == graphs[2]["links"]
    assert {frozenset((e["source"], e["target"])) for e in graphs[0]["links"]} == ring
