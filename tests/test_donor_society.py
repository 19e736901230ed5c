"""The donor game played by a society: the loop, scripted donors, distillation, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import QUICKSTART, as_overrides, read_decisions, run_config
from trainer.run_dir import RunLayout

DONOR_QUICKSTART = Path(__file__).parents[1] / "configs/donor_game/quickstart.yaml"


def donor_overrides(output_dir, **extra) -> list[str]:
    """A donor small enough for a unit test on the tiny model."""
    values = {
        "run.name": "d",
        "population.size": 4,
        "game.rounds": 4,
        "game.fractions": "[0.0, 0.5, 1.0]",
        "probe.orders": 2,
    }
    return as_overrides(output_dir, values, extra)


def run_donor(output_dir, **extra):
    return run_config(DONOR_QUICKSTART, donor_overrides(output_dir, **extra))


@pytest.mark.parametrize(
    "seat",
    [
        "{policy: fixed_fraction, fraction: 1.0, count: 4}",
        # gives 100% to a recipient with no history, then what the recipient gave: 100%
        "{policy: reciprocator, count: 4}",
    ],
)
def test_everyone_giving_everything_ends_in_the_closed_form(tmp_path, monkeypatch, seat):
    """All four seats scripted to give 100%: resources double-and-move each round.

    With N agents in halves A and B and everyone giving all, the donors of round r hand
    their whole holding to their recipients, multiplied by m. After round 0 the
    recipients hold (1 + m) E and the donors 0; every later round the holders give it
    all, so after R rounds the last recipients hold m^(R-1) (1 + m) E and the others 0:
    mean (m^(R-1) (1 + m) E) / 2 and Gini 1/2. E=10, m=2, R=4: 240 each for two agents.
    """
    from tests.test_game_protocol import _no_model

    _no_model(monkeypatch)
    result = run_donor(tmp_path, **{"population.scripted": f"[{seat}]"})
    for summary in result.summaries:
        metrics = summary.game_metrics
        assert metrics["mean_final_resources"] == 2**3 * 3 * 10 / 2
        assert metrics["max_final_resources"] == 240.0 and metrics["min_final_resources"] == 0.0
        assert metrics["gini_final_resources"] == 0.5
        assert metrics["mean_donation_fraction"] == 1.0
    decisions = read_decisions(tmp_path / "d", 0)
    assert len(decisions) == 4 * 2  # 4 rounds x 2 donors
    assert all(d["role"] == "donor" and d["action"] == "100%" for d in decisions)
    # payoff = minus what the donor held: 10, then 30 (round 1's donors got 3 x 10), 60, 120
    assert sorted({-d["payoff"] for d in decisions}) == [10.0, 30.0, 60.0, 120.0]


def test_donor_game_two_generations_on_the_tiny_model(tmp_path):
    result = run_donor(tmp_path)
    layout = RunLayout(tmp_path / "d")
    for g in (0, 1):
        decisions = read_decisions(tmp_path / "d", g)
        assert len(decisions) == 8 and {d["scoring"] for d in decisions} == {"sequence"}
        for d in decisions:
            assert sorted(d["options"]) == ["0%", "100%", "50%"]
            assert sum(d["option_probs"]) == pytest.approx(1.0, abs=1e-9)
        # roles alternate: a round's donors are the next round's recipients
        donors = [{d["agent"] for d in decisions if d["round"] == r} for r in range(4)]
        recipients = [{d["partner"] for d in decisions if d["round"] == r} for r in range(4)]
        assert all(donors[r] == recipients[r + 1] for r in range(3))
        pairs = [(d["agent"], d["partner"]) for d in decisions]
        assert len(set(pairs)) == len(pairs)  # no donor meets the same recipient twice
    s = result.summaries[1]
    assert s.game == "donor_game" and s.distilled >= 1
    assert set(s.game_metrics) >= {
        "mean_donation_fraction",
        "mean_final_resources",
        "gini_final_resources",
    }
    assert 0.0 <= s.game_metrics["gini_final_resources"] < 1.0
    probes = json.loads(layout.probes(1).read_text())
    assert set(probes["after"]["agent_00"]["probs"]) == {"0%", "50%", "100%"}


def test_donor_game_resumes_after_kills(tmp_path, monkeypatch):
    from trainer.fault_injection import check_kill_anywhere

    monkeypatch.setenv("WANDB_SILENT", "true")
    # The batched backend, which resumes a cut group bit for bit (test_distill_memory):
    # what is under test is the game's resume; TRL's is killed in test_fault_injection,
    # and on the tiny model TRL spends ~3 s per agent on set-up (2-core AMD EPYC), two
    # thirds of this test.
    backend = {"distill.backend": "batched"}
    overrides = [o for o in donor_overrides("x", **backend) if not o.startswith("run.output_dir=")]
    report = check_kill_anywhere(
        DONOR_QUICKSTART,
        overrides,
        tmp_path,
        kills=10,
        seed=1,
        focus=("rollout", "distillation", "probe"),
        progress=lambda _: None,
    )
    assert report.differences == [], "\n".join(report.differences)
    assert len(report.kills) == 10 and {"rollout", "distillation", "probe"} <= set(report.phases)


def test_the_naming_quickstart_is_not_a_donor_config():
    """game.name picks the section: a naming key under the donor game is named."""
    from trainer.config import ConfigError, load_experiment

    with pytest.raises(
        ConfigError,
        match="unknown key 'game.num_names'; known keys under 'game': name, rounds.*endowment",
    ):
        load_experiment(QUICKSTART, ["game.name=donor_game"])
