"""Multi-agent debate on arithmetic questions: the pure rules (no model, no torch).

After Du, Li, Torralba, Tenenbaum & Mordatch (2023), "Improving Factuality and
Reasoning in Language Models through Multiagent Debate" (arXiv:2305.14325), as used
for self-improvement by Subramaniam, Du, Tenenbaum, Torralba, Li & Mordatch (ICLR
2025), "Multiagent Finetuning: Self Improvement with Diverse Reasoning Chains"
(arXiv:2501.05707). Every agent first answers a question alone; then, for R revision
rounds, each agent sees the other agents' (or its neighbours') previous replies and
may revise. The final answer of the society is the majority vote. Du et al.'s
arithmetic task is "What is the result of a+b*c+d-e*f?"; here the number of
operations, the operand range and the operators are configurable.

This module provides questions (seeded, with a train split and a disjoint held-out
split), answer parsing, the two prompts, majority voting and round metrics. The
payoff (1 if correct else 0) is only used for fitness and metrics; no agent is
shown it.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from enum import Enum

import numpy as np

from societies.records import Message

GAME_NAME = "debate"
OPERATORS = ("+", "-", "*")

# Every expression text has one home split, fixed by a hash of the text: 1 in
# HELDOUT_SHARE texts belong to the held-out split and all others to train. Each
# split only emits texts whose home it is, so no expression can ever be in both,
# whatever the seeds, counts or difficulties (the train/eval overlap STYLE.md warns of).
HELDOUT_SHARE = 8

SYSTEM_PROMPT = (
    "You are one of several agents solving arithmetic questions together. Compute "
    "carefully with standard precedence: multiplication before addition and subtraction."
)
ANSWER_FORMAT = 'End with "The answer is N." where N is an integer.'


class Split(str, Enum):
    """The closed set of question splits; a question's id starts with its split."""

    TRAIN = "train"
    HELDOUT = "heldout"  # evaluation only, never distilled


@dataclass(frozen=True)
class ArithmeticDifficulty:
    """How hard the generated questions are."""

    min_steps: int = 2
    """Fewest operations per question (a question with k operations has k+1 operands)."""
    max_steps: int = 4
    """Most operations per question; each question draws uniformly in [min, max]."""
    max_operand: int = 20
    """Operands are drawn uniformly from 1..max_operand."""
    operators: tuple[str, ...] = OPERATORS
    """Allowed operators, a non-empty subset of '+', '-', '*'."""

    def __post_init__(self) -> None:
        if not 1 <= self.min_steps <= self.max_steps <= 12:
            raise ValueError(
                f"min_steps={self.min_steps}, max_steps={self.max_steps}; "
                "expected 1 <= min_steps <= max_steps <= 12"
            )
        if self.max_operand < 2:
            raise ValueError(f"max_operand={self.max_operand}; expected an integer >= 2")
        ops = () if isinstance(self.operators, str) else tuple(self.operators)
        if not ops or len(set(ops)) != len(ops) or not set(ops) <= set(OPERATORS):
            raise ValueError(
                f"operators={self.operators!r}; expected distinct items of {OPERATORS}"
            )
        object.__setattr__(self, "operators", ops)  # a YAML list becomes a hashable tuple


@dataclass(frozen=True)
class DebateRules:
    """Debate length, question counts, difficulty and prompt bounds."""

    rounds_per_question: int = 2
    """R: revision rounds after every agent's first answer (Du et al. use 2)."""
    questions_per_generation: int = 4
    """Train questions debated per generation; consecutive, never repeated."""
    heldout_questions: int = 8
    """Held-out questions for evaluation; never used for distillation."""
    difficulty: ArithmeticDifficulty = field(default_factory=ArithmeticDifficulty)
    max_new_tokens: int = 48
    """Generation budget per reply; prompts ask for a few short sentences to fit it."""
    max_shown_chars: int = 300
    """Longest reply quoted in a revision prompt; longer ones are elided in the middle."""

    def __post_init__(self) -> None:
        checks = [
            ("rounds_per_question", self.rounds_per_question, 0, "an integer >= 0"),
            ("questions_per_generation", self.questions_per_generation, 1, "an integer >= 1"),
            ("heldout_questions", self.heldout_questions, 0, "an integer >= 0"),
            ("max_new_tokens", self.max_new_tokens, 1, "an integer >= 1"),
            ("max_shown_chars", self.max_shown_chars, 40, "an integer >= 40"),
        ]
        for name, value, low, accepted in checks:
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name}={value!r}; expected {accepted}")
        if not isinstance(self.difficulty, ArithmeticDifficulty):
            raise ValueError(f"difficulty={self.difficulty!r}; expected an ArithmeticDifficulty")


@dataclass(frozen=True)
class ArithmeticQuestion:
    """One question; ``id`` is '<split>-<index>', e.g. 'heldout-0007'."""

    id: str
    text: str
    answer: int
    steps: int

    def __post_init__(self) -> None:
        if not re.fullmatch(r"(train|heldout)-\d+", self.id):
            raise ValueError(f"question id={self.id!r}; expected 'train-<n>' or 'heldout-<n>'")

    @property
    def split(self) -> Split:
        return split_of(self.id)


def split_of(question_id: str) -> Split:
    """The split a question id belongs to, read from its prefix."""
    prefix = question_id.split("-", 1)[0]
    try:
        return Split(prefix)
    except ValueError:
        raise ValueError(
            f"question id={question_id!r}; expected 'train-<n>' or 'heldout-<n>'"
        ) from None


def check_distillable(question_ids: Iterable[str]) -> None:
    """Raise ValueError if any id is held out: held-out questions are never distilled."""
    leaked = sorted({q for q in question_ids if split_of(q) is Split.HELDOUT})
    if leaked:
        raise ValueError(
            f"held-out questions {leaked[:5]} (of {len(leaked)}) must not be distilled"
        )


def evaluate(operands: Sequence[int], operators: Sequence[str]) -> int:
    """Exact value of ``o0 op1 o1 op2 o2 ...`` with * before + and -."""
    if len(operands) != len(operators) + 1:
        raise ValueError(f"{len(operands)} operands need {len(operands) - 1} operators")
    total, sign, term = 0, 1, operands[0]
    for op, x in zip(operators, operands[1:], strict=True):
        if op == "*":
            term *= x
        elif op in ("+", "-"):
            total += sign * term
            sign, term = (1 if op == "+" else -1), x
        else:
            raise ValueError(f"operator={op!r}; expected one of {OPERATORS}")
    return total + sign * term


def home_split(text: str) -> Split:
    """The only split that may contain ``text`` (a stable hash, see HELDOUT_SHARE)."""
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return Split.HELDOUT if int.from_bytes(digest, "big") % HELDOUT_SHARE == 0 else Split.TRAIN


def _split_rng(seed: int, split: Split) -> np.random.Generator:
    # Separate streams per split (as in societies.seeding, keyed by name); home_split
    # is what makes the splits disjoint, the streams only keep them independent.
    text = f"{seed}:debate_questions:{split.value}"
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest, "big") >> 1)


def question_bank(
    seed: int, split: Split | str, count: int, difficulty: ArithmeticDifficulty
) -> list[ArithmeticQuestion]:
    """The first ``count`` questions of ``split`` for ``seed`` and ``difficulty``.

    Deterministic and prefix-stable: the bank for ``count=n`` is the first n items of
    the bank for any larger count, so generation g can take items [g*Q, (g+1)*Q).
    Texts are distinct within a split and never shared between splits.
    """
    split = Split(split)
    if count < 0:
        raise ValueError(f"count={count}; expected an integer >= 0")
    d = difficulty
    rng = _split_rng(seed, split)
    seen: set[str] = set()
    questions: list[ArithmeticQuestion] = []
    attempts_left = 200 * count + 1000
    while len(questions) < count:
        if attempts_left == 0:
            raise ValueError(
                f"could draw only {len(questions)} of count={count} distinct {split.value} "
                f"questions at {d}; raise max_operand or max_steps, or add operators"
            )
        attempts_left -= 1
        steps = int(rng.integers(d.min_steps, d.max_steps + 1))
        operands = [int(x) for x in rng.integers(1, d.max_operand + 1, size=steps + 1)]
        ops = [d.operators[int(i)] for i in rng.integers(0, len(d.operators), size=steps)]
        expression = " ".join(
            [str(operands[0])] + [f"{o} {x}" for o, x in zip(ops, operands[1:], strict=True)]
        )
        text = f"What is {expression}?"
        if text in seen or home_split(text) is not split:
            continue
        seen.add(text)
        qid = f"{split.value}-{len(questions):04d}"
        questions.append(ArithmeticQuestion(qid, text, evaluate(operands, ops), steps))
    return questions


def generation_questions(
    seed: int, generation: int, rules: DebateRules
) -> list[ArithmeticQuestion]:
    """The train questions of ``generation``: no question repeats across generations."""
    if generation < 0:
        raise ValueError(f"generation={generation}; expected an integer >= 0")
    q = rules.questions_per_generation
    bank = question_bank(seed, Split.TRAIN, (generation + 1) * q, rules.difficulty)
    return bank[generation * q :]


def heldout_bank(seed: int, rules: DebateRules) -> list[ArithmeticQuestion]:
    """The held-out questions: the same for every generation of a run with this seed."""
    return question_bank(seed, Split.HELDOUT, rules.heldout_questions, rules.difficulty)


# A number: optional sign (a '-' glued to the digits and not preceded by a digit, so
# the '-5' in "12-5" is a subtraction), digits with optional comma thousands groups,
# optional decimal part.
_NUM = r"(?<![\w.])(?:-(?=\d))?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?!\d)"
_NUMBER = re.compile(_NUM)
# "answer is", "answer:", "answer =", "answer would be", ... then only decoration
# (spaces, colons, brackets, '$') before an optional "expression =" and the number.
_MARKED = re.compile(
    r"\banswer\b\s*(?:is|was|would be|will be|equals)?\s*[:=]?[\s:=$(\[{]*"
    rf"(?:(?:{_NUM}\s*[-+*/×x]\s*)+{_NUM}\s*=\s*)?({_NUM})(?!\s*[-+*/×]\s*\d)",
    re.IGNORECASE,
)


def _to_int(token: str) -> int | None:
    whole, _, frac = token.replace(",", "").partition(".")
    if frac.strip("0"):
        return None  # 7.5: a non-integer answer is invalid
    return int(whole)


def parse_answer(reply: str) -> int | None:
    """The final integer answer in a free-text reply, or None.

    Rule: after removing markdown emphasis, backticks and LaTeX ``\\boxed``, and
    mapping the Unicode minus to '-':
      1. if some "answer is / answer: / answer =" marker is directly followed by a
         number (or by "expression = number"), the number after the LAST such
         marker is the answer; a marker followed by an unevaluated expression
         ("The answer is 3 + 4.") does not count;
      2. otherwise the last number in the reply is the answer;
      3. the chosen number must be integral: "7.0" gives 7, "7.5" gives None (no
         fallback to an earlier number); "1,234" gives 1234;
      4. no number at all (empty, "I don't know") gives None.
    A '-' counts as a sign only when glued to the digits and not preceded by a digit.
    """
    text = reply.replace("\u2212", "-").replace("**", "").replace("__", "").replace("`", "")
    text = text.replace("\\boxed", "")
    marked = list(_MARKED.finditer(text))
    if marked:
        return _to_int(marked[-1].group(1))
    numbers = _NUMBER.findall(text)
    return _to_int(numbers[-1]) if numbers else None


_BREVITY = "Reply in at most three short sentences."


def truncate_reply(reply: str, max_chars: int) -> str:
    """``reply`` on one line, elided in the middle to at most ``max_chars`` characters.

    The middle goes because a reply's start holds its reasoning and its end its answer.
    """
    flat = " ".join(reply.split())
    if len(flat) <= max_chars:
        return flat
    keep = max_chars - 5  # room for " ... "
    head = keep // 2
    return f"{flat[:head].rstrip()} ... {flat[len(flat) - (keep - head) :].lstrip()}"


def first_prompt(question: ArithmeticQuestion) -> tuple[Message, ...]:
    """The first round: solve alone."""
    user = f"{question.text} Solve it step by step. {_BREVITY} {ANSWER_FORMAT}"
    return (Message("system", SYSTEM_PROMPT), Message("user", user))


def revision_prompt(
    question: ArithmeticQuestion,
    own_previous: str | None,
    others: Sequence[tuple[str, str]],
    max_shown_chars: int = 300,
) -> tuple[Message, ...]:
    """A revision round: the question, the agent's own last reply, the others' replies.

    Args:
        own_previous: this agent's previous reply, or None to not show it.
        others: (label, previous reply) per other agent, shown in the given order under
            the given labels; pass neutral labels ("Agent 2") to hide real ids.
        max_shown_chars: every shown reply is cut to this length (see truncate_reply).
    """
    labels = [label for label, _ in others]
    if any(not label.strip() for label in labels) or len(set(labels)) != len(labels):
        raise ValueError(f"other agents' labels {labels}; expected distinct non-empty labels")
    lines = [f"Question: {question.text}"]
    if own_previous is not None:
        lines.append(f'Your previous reply: "{truncate_reply(own_previous, max_shown_chars)}"')
    if others:
        lines.append("These are the previous replies of other agents:")
        lines += [f'{label}: "{truncate_reply(r, max_shown_chars)}"' for label, r in others]
        lines.append(
            "Use these replies carefully as additional advice. Can you give an updated answer?"
        )
    else:
        lines.append("No other agents' replies are available. Check your work and answer again.")
    lines.append(f"{_BREVITY} {ANSWER_FORMAT}")
    return (Message("system", SYSTEM_PROMPT), Message("user", "\n".join(lines)))


def payoff(answer: int | None, truth: int) -> float:
    """1.0 if the parsed answer is correct else 0.0 (fitness and metrics only)."""
    return 1.0 if answer is not None and answer == truth else 0.0


def majority_answer(answers: Sequence[int | None]) -> int | None:
    """The most common valid answer; ties go to the smallest |value|, then smallest value.

    None (unparseable) answers are ignored; if all are None the result is None.
    """
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None
    top = max(counts.values())
    return min((a for a, c in counts.items() if c == top), key=lambda a: (abs(a), a))


@dataclass(frozen=True)
class RoundMetrics:
    """Outcome of one debate round over the agents' parsed answers.

    Attributes:
        agents: number of answers.
        accuracy: share of all answers that are correct (None counts as wrong).
        majority: the majority answer (see majority_answer), None if no valid answer.
        majority_correct: whether the majority answer is the truth.
        agreement: share of valid answers equal to the majority; 0.0 if none is valid.
        distinct: number of distinct valid answers.
        invalid_rate: share of answers that could not be parsed.
    """

    agents: int
    accuracy: float
    majority: int | None
    majority_correct: bool
    agreement: float
    distinct: int
    invalid_rate: float

    def to_dict(self) -> dict[str, int | float | bool | None]:
        return asdict(self)


def round_metrics(answers: Sequence[int | None], truth: int) -> RoundMetrics:
    if not answers:
        raise ValueError("round_metrics needs at least one answer; got an empty list")
    n = len(answers)
    valid = [a for a in answers if a is not None]
    majority = majority_answer(valid)
    return RoundMetrics(
        agents=n,
        accuracy=sum(payoff(a, truth) for a in answers) / n,
        majority=majority,
        majority_correct=majority is not None and majority == truth,
        agreement=sum(a == majority for a in valid) / len(valid) if valid else 0.0,
        distinct=len(set(valid)),
        invalid_rate=(n - len(valid)) / n,
    )
