"""Debate rules: questions, splits, answer parsing, prompts and outcomes (Du et al. 2023)."""

from __future__ import annotations

import ast
import operator

import pytest

from societies.games.debate import (
    ArithmeticDifficulty,
    ArithmeticQuestion,
    DebateRules,
    Split,
    check_distillable,
    evaluate,
    first_prompt,
    generation_questions,
    heldout_bank,
    home_split,
    majority_answer,
    parse_answer,
    payoff,
    question_bank,
    revision_prompt,
    round_metrics,
    split_of,
    truncate_reply,
)

EASY = ArithmeticDifficulty(min_steps=2, max_steps=3, max_operand=9)
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}


def _ast_value(expression: str) -> int:
    """An independent evaluator: Python's own parser decides precedence."""

    def walk(node: ast.AST) -> int:
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        raise AssertionError(f"unexpected node {ast.dump(node)}")

    return walk(ast.parse(expression, mode="eval").body)


def _expression(question: ArithmeticQuestion) -> str:
    assert question.text.startswith("What is ") and question.text.endswith("?")
    return question.text[len("What is ") : -1]


def test_bank_is_deterministic_per_seed_and_prefix_stable():
    a = question_bank(3, "train", 20, EASY)
    assert a == question_bank(3, Split.TRAIN, 20, EASY)
    assert a[:7] == question_bank(3, "train", 7, EASY)
    assert [q.text for q in a] != [q.text for q in question_bank(4, "train", 20, EASY)]
    assert [q.id for q in a[:3]] == ["train-0000", "train-0001", "train-0002"]


def test_answers_match_an_independent_evaluator_and_the_difficulty():
    hard = ArithmeticDifficulty(min_steps=2, max_steps=6, max_operand=30)
    for split in Split:
        for q in question_bank(0, split, 300, hard):
            expression = _expression(q)
            assert q.answer == _ast_value(expression), q.text
            tokens = expression.split()
            assert len(tokens) == 2 * q.steps + 1 and 2 <= q.steps <= 6
            assert all(1 <= int(t) <= 30 for t in tokens[::2])
            assert set(tokens[1::2]) <= {"+", "-", "*"}
    only_plus = ArithmeticDifficulty(min_steps=2, max_steps=2, operators=("+",))
    assert all(
        "-" not in q.text and "*" not in q.text for q in question_bank(1, "train", 50, only_plus)
    )


def test_evaluate_uses_standard_precedence():
    assert evaluate([12, 7, 3, 5], ["+", "*", "-"]) == 12 + 7 * 3 - 5 == 28
    assert evaluate([2, 3, 4, 5], ["-", "*", "*"]) == 2 - 3 * 4 * 5 == -58
    assert evaluate([7], []) == 7
    with pytest.raises(ValueError, match="operator='/'"):
        evaluate([1, 2], ["/"])


def test_train_and_heldout_never_share_a_text():
    for seed in range(3):
        train = question_bank(seed, "train", 2000, EASY)
        heldout = question_bank(seed, "heldout", 300, EASY)
        assert len({q.text for q in train}) == 2000 and len({q.text for q in heldout}) == 300
        assert not {q.text for q in train} & {q.text for q in heldout}
        # By construction: each text has one home split, whatever the seed.
        assert all(home_split(q.text) is Split.TRAIN for q in train)
        assert all(home_split(q.text) is Split.HELDOUT for q in heldout)
    # Across seeds too: one run's train never holds another run's held-out item.
    other_heldout = {q.text for q in question_bank(9, "heldout", 300, EASY)}
    assert not other_heldout & {q.text for q in question_bank(0, "train", 2000, EASY)}


def test_ids_carry_the_split_and_heldout_is_not_distillable():
    rules = DebateRules(difficulty=EASY)
    heldout = heldout_bank(0, rules)
    assert [q.id for q in heldout[:2]] == ["heldout-0000", "heldout-0001"]
    assert len(heldout) == 8 and all(q.split is Split.HELDOUT for q in heldout)
    assert heldout == heldout_bank(0, rules)  # fixed across generations
    assert split_of("heldout-0007") is Split.HELDOUT and split_of("train-12") is Split.TRAIN
    gen0, gen1 = generation_questions(0, 0, rules), generation_questions(0, 1, rules)
    assert [q.id for q in gen1] == ["train-0004", "train-0005", "train-0006", "train-0007"]
    assert not {q.text for q in gen0} & {q.text for q in gen1}
    check_distillable([q.id for q in gen0 + gen1])
    with pytest.raises(ValueError, match="heldout-0003"):
        check_distillable(["train-0001", heldout[3].id])
    with pytest.raises(ValueError, match="'eval-1'"):
        ArithmeticQuestion("eval-1", "What is 1 + 2?", 3, 1)


def test_impossible_bank_names_the_problem():
    tiny = ArithmeticDifficulty(min_steps=1, max_steps=1, max_operand=2, operators=("+",))
    with pytest.raises(ValueError, match="distinct train questions"):
        question_bank(0, "train", 10, tiny)  # only 4 expressions exist


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("The answer is 42.", 42),
        ("42", 42),
        ("= -17", -17),
        ("Answer: 1,234", 1234),
        ("**42**", 42),
        ("So 3+4=7. The final answer is 7", 7),
        ("The answer is **-3**.", -3),
        ("12 * 3 = 36, then 36 - 5 = 31. The answer is 31. I checked 2 times.", 31),
        ("The answer is 9. Wait, recomputing: 12 - 5 = 7", 9),  # the explicit marker wins
        ("The answer is 42. No, the answer is 41.", 41),  # the last marker wins
        ("Answer: 12 + 7 * 3 - 5 = 28", 28),
        ("The answer is 3 + 4.", 4),  # unevaluated: the marker is skipped, last number
        ("First 12-5 is 7", 7),  # '-' after a digit is subtraction, not a sign
        ("The answer is \u221212.", -12),  # Unicode minus
        ("The answer is $\\boxed{56}$.", 56),
        ("The answer is 7.0.", 7),
        ("The answer is 7.5.", None),  # non-integer: invalid, no fallback
        ("It is 1,234,567", 1234567),
        ("Candidates 3,4,5", 5),
        ("", None),
        ("I don't know.", None),
        ("The answer is unclear.", None),
        ("the answer is: 0", 0),
    ],
)
def test_parse_answer(reply, expected):
    assert parse_answer(reply) == expected


def test_prompts_ask_for_the_answer_format_and_show_labelled_replies():
    q = ArithmeticQuestion("train-0000", "What is 12 + 7 * 3 - 5?", 28, 3)
    system, user = first_prompt(q)
    assert system.role == "system" and user.role == "user"
    assert user.content.startswith("What is 12 + 7 * 3 - 5?")
    assert '"The answer is N."' in user.content and "at most three" in user.content

    others = [("Agent 2", "12+21-5 = 28.\nThe answer is 28."), ("Agent 3", "x" * 1000)]
    _, user = revision_prompt(q, "The answer is 30.", others, max_shown_chars=60)
    text = user.content
    assert 'Your previous reply: "The answer is 30."' in text
    assert text.index('Agent 2: "12+21-5 = 28. The answer is 28."') < text.index("Agent 3:")
    agent3 = next(line for line in text.splitlines() if line.startswith("Agent 3:"))
    assert len(agent3) == len('Agent 3: ""') + 60 and " ... " in agent3
    assert text.rstrip().endswith('"The answer is N." where N is an integer.')

    _, alone = revision_prompt(q, None, [])
    assert "previous reply" not in alone.content and "No other agents" in alone.content
    with pytest.raises(ValueError, match="distinct non-empty labels"):
        revision_prompt(q, None, [("Agent 2", "a"), ("Agent 2", "b")])


def test_truncate_keeps_both_ends_within_the_bound():
    reply = "Start of the reasoning " + "blah " * 100 + "The answer is 42."
    short = truncate_reply(reply, 80)
    assert len(short) <= 80 and short.startswith("Start") and short.endswith("The answer is 42.")
    assert truncate_reply("  short\n reply ", 80) == "short reply"


def test_majority_ignores_invalid_and_breaks_ties_deterministically():
    assert majority_answer([3, 3, 5, None, None, None]) == 3
    assert majority_answer([5, -4, 5, -4]) == -4  # tie: smallest |value|
    assert majority_answer([4, -4]) == -4  # tie on |value|: smallest value
    assert majority_answer([-4, 4, 7, 7, -4, 4]) == -4
    assert majority_answer([None, None]) is None and majority_answer([]) is None


def test_round_metrics_and_payoff_on_hand_made_answers():
    m = round_metrics([28, 28, 30, None], truth=28)
    assert (m.agents, m.accuracy, m.majority, m.majority_correct) == (4, 0.5, 28, True)
    assert (m.agreement, m.distinct, m.invalid_rate) == (pytest.approx(2 / 3), 2, 0.25)
    m = round_metrics([1, 2, None, None, None], truth=2)  # tie 1 vs 2 -> 1, wrong
    assert (m.majority, m.majority_correct, m.accuracy, m.agreement) == (1, False, 0.2, 0.5)
    m = round_metrics([None], truth=0)
    assert m.to_dict() == {
        "agents": 1,
        "accuracy": 0.0,
        "majority": None,
        "majority_correct": False,
        "agreement": 0.0,
        "distinct": 0,
        "invalid_rate": 1.0,
    }
    assert (payoff(7, 7), payoff(6, 7), payoff(None, 0)) == (1.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="empty"):
        round_metrics([], truth=1)


def test_rules_validate_and_name_the_bad_value():
    assert DebateRules().rounds_per_question == 2 and DebateRules().max_new_tokens == 48
    with pytest.raises(ValueError, match="rounds_per_question=-1"):
        DebateRules(rounds_per_question=-1)
    with pytest.raises(ValueError, match="questions_per_generation=0"):
        DebateRules(questions_per_generation=0)
    with pytest.raises(ValueError, match="max_shown_chars=10"):
        DebateRules(max_shown_chars=10)
    with pytest.raises(ValueError, match="min_steps=5, max_steps=3"):
        ArithmeticDifficulty(min_steps=5, max_steps=3)
    with pytest.raises(ValueError, match="operators=\\('/',\\)"):
        ArithmeticDifficulty(operators=("/",))
    with pytest.raises(ValueError, match="max_operand=1"):
        ArithmeticDifficulty(max_operand=1)
    assert ArithmeticDifficulty(operators=["*", "+"]).operators == ("*", "+")  # type: ignore[arg-type]
