"""Person vs situation: the two-way decomposition on tables with known shares, and the
probe through the real scoring path on the tiny reference run."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from societies.measures.person_situation import decompose
from societies.transcripts import read_decisions
from trainer.person_situation import PersonSituation, person_situation
from trainer.run_dir import RunLayout

# --- the decomposition ------------------------------------------------------------------


def test_a_table_that_depends_only_on_the_agent():
    rng = np.random.default_rng(0)
    person = rng.normal(size=(6, 1))
    table = person + 0.01 * rng.normal(size=(6, 10))
    shares = decompose(table)
    assert shares.share_agent >= 0.95
    assert shares.share_agent + shares.share_context + shares.share_residual == pytest.approx(1)


def test_a_table_that_depends_only_on_the_context():
    rng = np.random.default_rng(1)
    table = rng.normal(size=(1, 12)) + 0.01 * rng.normal(size=(5, 12))
    assert decompose(table).share_context >= 0.95


def test_an_additive_table_has_the_shares_its_effects_give():
    # x_ij = a_i + c_j: SS_agent = c * sum a_i^2 = 3 * 8 = 24, SS_context = a * sum c_j^2
    # = 4 * 2 = 8 (a and c centred), no residual: shares 3/4 and 1/4 exactly.
    a = np.array([-2.0, 0.0, 0.0, 2.0])
    c = np.array([-1.0, 0.0, 1.0])
    shares = decompose(5.0 + a[:, None] + c[None, :])
    assert shares.grand_mean == pytest.approx(5.0)
    assert (shares.ss_agent, shares.ss_context) == pytest.approx((24.0, 8.0))
    assert shares.ss_residual == pytest.approx(0.0, abs=1e-24)
    assert (shares.share_agent, shares.share_context) == pytest.approx((0.75, 0.25))


def test_a_double_centred_term_is_the_residual():
    # e has zero row and column means, so it is pure agent x context interaction.
    a = np.array([1.0, -1.0])
    c = np.array([2.0, -2.0])
    e = np.array([[1.0, -1.0], [-1.0, 1.0]])
    shares = decompose(a[:, None] + c[None, :] + e)
    # SS: agent 2 * 2 = 4, context 2 * 8 = 16, residual 4; total 24.
    assert (shares.ss_agent, shares.ss_context, shares.ss_residual, shares.ss_total) == (
        pytest.approx((4.0, 16.0, 4.0, 24.0))
    )
    assert shares.share_residual == pytest.approx(1 / 6)


def test_equal_cells_have_no_shares():
    shares = decompose(np.full((3, 4), 0.25))
    assert shares.ss_total == 0.0
    assert math.isnan(shares.share_agent) and math.isnan(shares.share_context)


def test_cells_equal_to_float32_rounding_have_no_shares_and_write_strict_json(tmp_path):
    """Saturated probabilities (every cell ~1.0, differences ~1e-9) once printed shares
    0.111 / 0.567 / 0.322 split from rounding noise."""
    rng = np.random.default_rng(0)
    saturated = decompose(1.0 - 1e-9 * rng.random((3, 6)))
    assert 0.0 < saturated.ss_total < 1e-16 and saturated.flat
    assert math.isnan(saturated.share_agent) and math.isnan(saturated.share_residual)
    # Differences of 1e-3 are not rounding: shares as usual, summing to 1.
    real = decompose(0.5 + 1e-3 * rng.random((3, 6)))
    assert not real.flat
    assert real.share_agent + real.share_context + real.share_residual == pytest.approx(1.0)

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    text = json.dumps(saturated.to_dict())
    loaded = json.loads(text, parse_constant=refuse)  # strict: NaN would be refused
    assert loaded["share_agent"] is None
    back = type(saturated).from_dict(loaded)
    assert back.flat and back.ss_total == saturated.ss_total


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([[1.0, 2.0, 3.0]], "1 x 3 table; expected at least 2 agents and 2 contexts"),
        ([[1.0, 2.0], [3.0]], "ragged"),
        ([1.0, 2.0], r"shape \(2,\); expected \(agents, contexts\)"),
        ([[1.0, 2.0], [3.0, float("nan")]], r"values\[1\]\[1\]=nan; expected finite"),
    ],
)
def test_bad_tables_are_named(values, message):
    with pytest.raises(ValueError, match=message):
        decompose(values)


# --- the probe on the tiny reference run ------------------------------------------------


def test_base_model_agents_differ_only_by_context(reference):
    """After generation 0 of the reference run no agent had a success to learn from, so
    every adapter was carried over with B = 0: every agent is the base model. Rows are
    then equal, the agent share is ~0, and each cell is the probability its decider had
    in the transcript (the same model, another batch)."""
    layout = RunLayout(reference.run_dir)
    training = {
        p.parent.name: json.loads(p.read_text())
        for p in layout.generation(0).glob("adapters/*/training.json")
    }
    assert {t["operation"] for t in training.values()} == {"carried_over"}  # the premise

    result = person_situation(reference.run_dir, 0, contexts=4, seed=3)
    assert result.agents == ("agent_00", "agent_01", "agent_02", "agent_03")
    assert len(result.contexts) == 4 and len(result.values) == 4
    table = np.array(result.values)
    assert np.all((table > 0) & (table < 1))
    np.testing.assert_allclose(table, np.broadcast_to(table[0], table.shape), atol=1e-6)
    assert result.variance.share_context > 0.999
    summary = json.loads(layout.summary(0).read_text())
    assert result.option == summary["majority_option"]
    recorded = {(d.round, d.pair, d.agent): d for d in read_decisions(layout.transcripts(0))}
    for j, ref in enumerate(result.contexts):
        decider = result.agents.index(ref.agent)
        expected = recorded[(ref.round, ref.pair, ref.agent)].prob_of(result.option)
        assert table[decider, j] == pytest.approx(expected, abs=1e-5)
    # Seeded: the same seed draws the same contexts; the record survives JSON.
    assert PersonSituation.from_dict(json.loads(json.dumps(result.to_dict()))) == result


def test_distilled_agents_differ_as_persons(reference):
    result = person_situation(reference.run_dir, 1, contexts=4, seed=0)
    v = result.variance
    assert v.share_agent > 0 and v.share_context > 0
    assert v.share_agent + v.share_context + v.share_residual == pytest.approx(1)
    assert v.ss_total == pytest.approx(((np.array(result.values) - v.grand_mean) ** 2).sum())


@pytest.mark.parametrize(
    ("generation", "contexts", "error", "message"),
    [
        (
            5,
            4,
            FileNotFoundError,
            r"generation 5 of .* is not complete; complete generations: \[0, 1\]",
        ),
        (1, 1, ValueError, r"contexts=1; accepted: 2\.\.16"),
        (1, 17, ValueError, r"contexts=17; accepted: 2\.\.16"),
    ],
)
def test_bad_requests_name_the_value(reference, generation, contexts, error, message):
    with pytest.raises(error, match=message):
        person_situation(reference.run_dir, generation, contexts=contexts)


def test_the_command_reports_every_complete_generation(reference, tmp_path, capsys):
    import json
    import shutil

    from trainer.cli import main

    # The command writes person_situation.json into the run: a copy, not the shared run.
    run = shutil.copytree(reference.run_dir, tmp_path / "run")
    assert main(["person-situation", str(run), "--contexts", "4", "--json"]) == 0
    assert (run / "person_situation.json").is_file()
    assert not (reference.run_dir / "person_situation.json").exists()
    rows = json.loads(capsys.readouterr().out)
    assert [r["generation"] for r in rows] == [0, 1]
    for r in rows:
        v = r["variance"]
        shares = [v["share_agent"], v["share_context"], v["share_residual"]]
        if None in shares:  # a flat table: no shares at all (null, strict JSON)
            assert shares == [None, None, None]
        else:
            assert sum(shares) == pytest.approx(1.0)
    assert main(["person-situation", str(run), "--generation", "7"]) == 2


def test_a_run_without_a_complete_generation_is_refused_and_nothing_written(tmp_path, capsys):
    from tests.conftest import QUICKSTART, tiny_overrides
    from trainer.cli import main
    from trainer.steps import prepare_run

    run = prepare_run(QUICKSTART, tiny_overrides(tmp_path))  # config.yaml, no generation
    assert main(["person-situation", str(run)]) == 2
    assert "has no completed generation yet" in capsys.readouterr().err
    assert not (run / "person_situation.json").exists()
