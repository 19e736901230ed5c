"""A committed minority of share 0 is the tipping sweep's control: no seat is taken, and
the option the minority would hold is still chosen and recorded."""

from __future__ import annotations

import json

import pytest

from tests.conftest import QUICKSTART, run_tiny
from trainer.config import ConfigError, load_experiment
from trainer.run_dir import RunLayout
from trainer.sweep_plan import plan_sweep

COMMITTED = QUICKSTART.parent / "committed_minority.yaml"


def test_share_zero_loads_and_a_negative_share_is_refused_naming_the_range():
    config = load_experiment(COMMITTED, ["interventions.0.share=0"])
    assert config.interventions[0].share == 0
    with pytest.raises(ConfigError, match=r"interventions\[0\].share=-0.1 .*0 <= share < 1"):
        load_experiment(COMMITTED, ["interventions.0.share=-0.1"])
    # a share that rounds to no seat of the 8 is a mistake, not the control
    with pytest.raises(ConfigError, match=r"share=0.01 .*0 \(the control: no seat\) or a share"):
        load_experiment(COMMITTED, ["interventions.0.share=0.01"])


def test_a_sweep_plans_the_share_zero_control_beside_the_pushed_shares(tmp_path):
    plan = plan_sweep(
        COMMITTED,
        {"interventions.0.share": [0, 0.25]},
        2,
        out=tmp_path / "exp",
        tipping_key="interventions.0.share",
    )
    shares = sorted({run.point["interventions.0.share"] for run in plan.runs})
    assert shares == [0, 0.25] and len(plan.runs) == 4


def test_the_control_takes_no_seat_and_records_the_option_it_would_hold(tiny_model_path, tmp_path):
    run = run_tiny(
        tmp_path,
        **{
            "run.generations": 1,
            "interventions": "[{kind: committed_minority, round: 2, share: 0}]",
        },
    )
    layout = RunLayout(run.run_dir)
    (event,) = [json.loads(x) for x in layout.interventions(0).read_text().splitlines()]
    assert (event["kind"], event["round"], event["agents"]) == ("committed_minority", 2, [])
    decisions = [json.loads(x) for x in layout.transcripts(0).read_text().splitlines()]
    played = [d["action"] for d in decisions if d["round"] < 2]
    options = decisions[0]["options"]
    assert played.count(event["option"]) == min(played.count(o) for o in options)
    assert all(d["scoring"] != "scripted" for d in decisions)  # every seat stayed an LLM's
