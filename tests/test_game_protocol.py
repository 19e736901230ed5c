"""The game protocol: the naming game on it plays exactly as before; scripted seats.

The naming game moved onto the protocol unchanged in behaviour: a seeded tiny-model run's
generation-0 transcript, recorded before the refactor (tests/data/naming_game_tiny_gen0.jsonl,
16 decisions), is replayed and compared: every discrete field exactly (pinned by a hash),
the option probabilities to float32 rounding (they come from the model's kernels, which
differ between CPUs). Generation 0 starts from fresh adapters (B = 0), so nothing trained
enters it; later generations depend on Adam-trained weights (tests/float32.py).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.conftest import read_decisions, run_tiny
from tests.float32 import OPTION_MASS_RTOL, PROB_ATOL_OTHER_BATCH, assert_close
from trainer.run_dir import RunLayout

FIXTURE = Path(__file__).parent / "data" / "naming_game_tiny_gen0.jsonl"
# Fields of the pre-protocol Decision record that carry no float from the model.
DISCRETE = [
    "run",
    "generation",
    "round",
    "pair",
    "agent",
    "partner",
    "game",
    "messages",
    "options",
    "action",
    "partner_action",
    "payoff",
    "seed_streams",
    "schema_version",
]
PINNED_SHA256 = "222b945807b9f343ddf30ad6b183d7e8486606174c3494e0a3c12a21a42dbfe4"


def _discrete_hash(records: list[dict]) -> str:
    rows = [{k: r[k] for k in DISCRETE} for r in records]
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()


def test_naming_game_transcript_is_unchanged_by_the_protocol(tmp_path):
    before = [json.loads(line) for line in FIXTURE.read_text().splitlines()]
    assert _discrete_hash(before) == PINNED_SHA256  # the fixture is what was recorded
    run_tiny(tmp_path, **{"run.generations": 1})
    after = [
        json.loads(line)
        for line in RunLayout(tmp_path / "t").transcripts(0).read_text().splitlines()
    ]
    assert len(after) == len(before) == 16
    assert _discrete_hash(after) == PINNED_SHA256
    for old, new in zip(before, after, strict=True):
        assert_close(new["option_probs"], old["option_probs"], PROB_ATOL_OTHER_BATCH, "probs")
        assert new["option_mass"] == pytest.approx(old["option_mass"], rel=OPTION_MASS_RTOL)
        assert (new["scoring"], new["role"], new["policy"]) == ("next_token", "player", None)


def _no_model(monkeypatch):
    """Loading a model (or resolving one) fails the test."""
    import societies.population
    import trainer.generation_loop

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded for a population of scripted seats")

    monkeypatch.setattr(societies.population.PopulationModel, "__init__", refuse)
    monkeypatch.setattr(trainer.generation_loop, "resolve_model", refuse)


def test_a_scripted_population_runs_without_a_model(tmp_path, monkeypatch):
    _no_model(monkeypatch)
    seats = "[{policy: fixed_name, name: B, count: 2}, {policy: uniform, count: 2}]"
    result = run_tiny(tmp_path, **{"game.names": "[A, B, C, D]", "population.scripted": seats})
    assert [s.generation for s in result.summaries] == [0, 1]
    for g in (0, 1):
        decisions = read_decisions(tmp_path / "t", g)
        assert len(decisions) == 4 * 4  # 4 rounds x (2 pairs x 2 seats)
        for d in decisions:
            assert d["scoring"] == "scripted" and d["option_mass"] == 1.0
            if d["agent"] in ("agent_00", "agent_01"):  # the committed seats
                assert d["policy"] == "fixed_name:B" and d["action"] == "B"
                assert d["option_probs"][d["options"].index("B")] == 1.0
            else:
                assert d["policy"] == "uniform" and d["option_probs"] == [0.25] * 4
    summary = result.summaries[1]
    assert (summary.distilled, summary.carried_over, summary.scripted) == (0, 0, 4)
    assert not (tmp_path / "t" / "initial_adapters").exists()


def test_committed_seats_never_deviate_beside_llm_agents(reference, tmp_path):
    """One committed agent among three LLM agents: it always says its name, is never
    distilled or probed, and the LLM agents are distilled as usual."""
    result = run_tiny(
        tmp_path,
        **{"game.names": "[A, B, C, D]", "population.scripted": "[{policy: fixed_name, name: D}]"},
    )
    committed = "agent_03"
    for g in (0, 1):
        mine = [d for d in read_decisions(tmp_path / "t", g) if d["agent"] == committed]
        assert mine and all(d["action"] == "D" and d["scoring"] == "scripted" for d in mine)
        others = [d for d in read_decisions(tmp_path / "t", g) if d["agent"] != committed]
        assert all(d["scoring"] == "next_token" and d["policy"] is None for d in others)
    layout = RunLayout(tmp_path / "t")
    assert not layout.adapter(0, committed).exists()
    assert all(layout.adapter(1, a).exists() for a in ("agent_00", "agent_01", "agent_02"))
    probes = json.loads(layout.probes(1).read_text())
    assert sorted(probes["after"]) == ["agent_00", "agent_01", "agent_02"]
    assert result.summaries[0].scripted == 1


@pytest.mark.parametrize(
    "seats, message",
    [
        ("[{policy: fixed_name, name: Q}]", "fixed_name needs name: one of ['A', 'B', 'C', 'D']"),
        ("[{policy: tit_for_tat}]", "no scripted policy 'tit_for_tat'; accepted: ['fixed_name'"),
        ("[{policy: uniform, count: 5}]", "at most population.size=4 seats"),
    ],
)
def test_bad_scripted_seats_are_named(tmp_path, seats, message):
    from trainer.config import ConfigError

    with pytest.raises((ConfigError, ValueError), match=message.replace("[", r"\[")):
        run_tiny(tmp_path, **{"game.names": "[A, B, C, D]", "population.scripted": seats})
    assert not (tmp_path / "t").exists()  # nothing written
