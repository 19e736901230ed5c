"""Debate played by a society: free-text turns, parsing, metrics, MAFT data, held-out probe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from societies.games import debate
from tests.conftest import as_overrides, read_decisions, run_config
from trainer.run_dir import RunLayout

DEBATE = Path(__file__).parents[1] / "configs/debate/arithmetic.yaml"


def debate_overrides(output_dir, **extra) -> list[str]:
    """A debate small enough for a unit test on the tiny model."""
    values = {
        "run.name": "db",
        "population.size": 3,
        "game.questions_per_generation": 2,
        "game.rounds_per_question": 1,
        "game.heldout_questions": 3,
        "game.max_new_tokens": 8,
    }
    return as_overrides(output_dir, values, extra)


def run_debate(output_dir, **extra):
    return run_config(DEBATE, debate_overrides(output_dir, **extra))


def test_gibberish_replies_are_recorded_invalid_never_a_crash(tmp_path):
    """The tiny random model writes random tokens: the run completes, every reply is
    recorded with its text, and the unparseable ones count as invalid."""
    result = run_debate(tmp_path, **{"run.generations": 1})
    decisions = read_decisions(tmp_path / "db", 0)
    assert len(decisions) == 2 * 2 * 3  # questions x rounds per question x agents
    for d in decisions:
        assert d["scoring"] == "generate" and d["options"] == [] and isinstance(d["text"], str)
        assert d["valid"] == (debate.parse_answer(d["text"]) is not None)
        assert d["action"] == ("" if not d["valid"] else str(debate.parse_answer(d["text"])))
    invalid = sum(not d["valid"] for d in decisions) / len(decisions)
    metrics = result.summaries[0].game_metrics
    assert metrics["invalid_rate"] == pytest.approx(invalid)
    assert 0.0 <= metrics["heldout_accuracy"] <= 1.0


def _scripted_replies(monkeypatch, answer_for):
    """Replace decoding (the tiny model's gibberish) by fixed replies: a stand-in for a
    model that can do arithmetic, so the test can check what is distilled."""
    import societies.text_generation as generation  # rounds and probes call it from here

    def replies(population, requests, temperature, seed):
        return [answer_for(r) for r in requests]

    monkeypatch.setattr(generation, "generate_replies", replies)


def test_what_a_debate_distils_and_measures(tmp_path, monkeypatch):
    """Agents 0 and 1 answer right from the start; agent 2 first answers wrong, then
    moves to the majority. MAFT data: first answers agreeing with the final majority
    (agents 0, 1) and the final answer that moved (agent 2's)."""

    def answer_for(request):
        user = request.messages[-1].content
        question = user.split("Question: ")[-1].split("?")[0] + "?"
        text = next(q for q in _all_questions() if q.text in user or q.text == question)
        first_round = "previous replies" not in user
        wrong = request.agent == "agent_02" and first_round
        return f"The answer is {text.answer + (1 if wrong else 0)}."

    _scripted_replies(monkeypatch, answer_for)
    result = run_debate(tmp_path)
    for g in (0, 1):
        decisions = read_decisions(tmp_path / "db", g)
        assert all(d["valid"] for d in decisions)
        metrics = result.summaries[g].game_metrics
        assert metrics["accuracy_first"] == pytest.approx(2 / 3)
        assert metrics["accuracy_final"] == 1.0 and metrics["accuracy_majority"] == 1.0
        assert metrics["agreement_final"] == 1.0 and metrics["distinct_answers_final"] == 1.0
        # held-out questions are answered alone, as a first answer: agent 2 errs
        assert metrics["heldout_accuracy"] == pytest.approx(2 / 3)
        assert result.summaries[g].distilled == 3
        training = {
            a: json.loads((RunLayout(tmp_path / "db").adapter(g, a) / "training.json").read_text())
            for a in ("agent_00", "agent_01", "agent_02")
        }
        # own_successes: 2 questions -> 2 first answers each for agents 0 and 1; agent 2
        # has its 2 moved final answers
        assert {a: t["examples"] for a, t in training.items()} == {
            "agent_00": 2,
            "agent_01": 2,
            "agent_02": 2,
        }


def _all_questions():
    from trainer.config import load_experiment

    rules = load_experiment(DEBATE, debate_overrides("x")).game.rules()
    questions = [q for g in range(3) for q in debate.generation_questions(0, g, rules)]
    return questions + debate.heldout_bank(0, rules)


def test_heldout_questions_are_never_debated():
    from societies.games.debate_society import DebateSocietyGame
    from trainer.config import load_experiment

    rules = load_experiment(DEBATE, debate_overrides("x")).game.rules()
    game = DebateSocietyGame(rules, root_seed=0)
    debated = {game.question(g, r).text for g in range(5) for r in range(game.rounds)}
    heldout = {q.text for q in debate.heldout_bank(0, rules)}
    assert debated and heldout and not debated & heldout


def test_debate_resumes_after_kills(tmp_path, monkeypatch):
    from trainer.fault_injection import check_kill_anywhere

    overrides = [o for o in debate_overrides("x") if not o.startswith("run.output_dir=")]
    report = check_kill_anywhere(
        DEBATE,
        overrides,
        tmp_path,
        kills=10,
        seed=2,
        focus=("rollout", "probe"),
        progress=lambda _: None,
    )
    assert report.differences == [], "\n".join(report.differences)
    assert len(report.kills) == 10 and {"rollout", "probe"} <= set(report.phases)
