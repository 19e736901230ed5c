"""The end-of-run table: one row per generation, the game's own columns in place."""

from __future__ import annotations

from trainer.summary import GenerationSummary, format_table


def _summary(generation: int, **game_metrics) -> GenerationSummary:
    return GenerationSummary(
        generation=generation,
        game="naming_game",
        rounds=10,
        window=3,
        majority_option="I",
        majority_share=0.7222,
        prior_on_majority_before=0.5187,
        prior_on_majority_after=0.9231,
        prior_entropy_before=2.304,
        prior_entropy_after=0.598,
        option_mass_mean=0.99,
        distilled=6,
        carried_over=0,
        game_metrics=game_metrics,
    )


def test_the_naming_game_table_names_its_convergence_rule():
    table = format_table(
        [
            _summary(0, success_rate_last=0.5556, convergence_round=None),
            _summary(1, success_rate_last=1.0, convergence_round=5),
        ]
    )
    header, rule, first, second = table.splitlines()
    columns = [c.strip() for c in header.split("  ") if c.strip()]
    assert columns == [
        "gen",
        "success (last rounds)",
        "majority (share)",
        "converged (3N streak)",
        "prior on majority: before -> after",
        "prior entropy (bits)",
    ]
    assert set(rule.replace(" ", "")) == {"-"}
    cells = [c.strip() for c in first.split("  ") if c.strip()]
    assert cells == ["0", "56% (last 3 of 10)", "I (72%)", "-", "0.519 -> 0.923", "2.30 -> 0.60"]
    # every column starts where its header does
    start = header.index("converged (3N streak)")
    assert second[start:].startswith("round 5") and first[start:].startswith("-")
