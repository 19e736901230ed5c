"""What an agent is asked to choose, what the model makes of it, and the draw.

Every engine (PEFT, the stacked multi-LoRA engine, vLLM) takes :class:`ChoiceRequest`
rows, returns :class:`OptionScores` and draws the option with :func:`choose_scored`, so
the same seeded uniform gives the same choice whichever engine scored it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from societies.records import Message, Scoring

if TYPE_CHECKING:  # torch is imported by the engines that score, not by configs
    import torch


@dataclass(frozen=True)
class ChoiceRequest:
    """Ask ``agent`` to pick one of ``options`` after the chat ``messages``."""

    agent: str
    messages: tuple[Message, ...]
    options: tuple[str, ...]


@dataclass(frozen=True)
class OptionScores:
    """The model's view of one request.

    Attributes:
        logprobs: log-probability of each option (aligned with the request): of its token
            as the next token (``NEXT_TOKEN``), or of its whole token sequence after the
            prompt, ``sum_j log p(o_j | prompt, o_<j)`` (``SEQUENCE``).
        probs: ``logprobs`` renormalised over the options (temperature 1): the belief.
        option_mass: total probability of the options before renormalising. For both
            scorings it is the mass the model's distribution over continuations puts on
            exactly these option texts (for sequence scoring, ``sum exp(logprobs)`` over
            whole sequences), so the two are comparable in meaning. No end-of-answer token
            is scored: an option whose tokens begin another's ("Agree", "Agree strongly")
            also counts the longer one's mass.
        scoring: which of the two computed ``logprobs``.
    """

    logprobs: tuple[float, ...]
    probs: tuple[float, ...]
    option_mass: float
    scoring: Scoring = Scoring.NEXT_TOKEN

    def __post_init__(self) -> None:
        model_scorings = (Scoring.NEXT_TOKEN, Scoring.SEQUENCE)  # what a model call gives
        if self.scoring not in [s.value for s in model_scorings]:
            raise ValueError(
                f"scoring={self.scoring!r}; accepted: {[s.value for s in model_scorings]}"
            )
        object.__setattr__(self, "scoring", Scoring(self.scoring))

    @classmethod
    def from_logprobs(cls, option_lp: torch.Tensor, scoring: Scoring) -> OptionScores:
        """Scores from float64 option log-probabilities: mass and renormalised probs."""
        return cls(
            logprobs=tuple(option_lp.tolist()),
            probs=tuple(option_lp.softmax(dim=-1).tolist()),
            option_mass=float(option_lp.exp().sum()),
            scoring=scoring,
        )


def sample_index(logprobs: Sequence[float], temperature: float, uniform: float) -> int:
    """Sample an option index from softmax(logprobs / temperature) by inverse CDF.

    ``uniform`` in [0, 1) is drawn by the caller from a seeded stream, so the same
    draw reproduces the same choice; temperature 0 is greedy (first maximum).
    """
    values = np.asarray(logprobs, dtype=np.float64)
    if temperature == 0:
        return int(np.argmax(values))
    scaled = values / temperature
    weights = np.exp(scaled - scaled.max())
    cdf = np.cumsum(weights / weights.sum())
    return int(min(np.searchsorted(cdf, uniform, side="right"), len(values) - 1))


def tokenize_option(tokenizer, option: str) -> tuple[int, ...]:
    """An option's tokens on their own (no special tokens); empty text is an error."""
    ids = tuple(tokenizer(option, add_special_tokens=False).input_ids)
    if not ids:
        raise ValueError(f"option {option!r} is empty text; options must be non-empty")
    return ids


def choose_scored(
    score: Callable[[Sequence[ChoiceRequest]], list[OptionScores]],
    requests: Sequence[ChoiceRequest],
    temperature: float,
    uniforms: Sequence[float],
) -> list[tuple[OptionScores, str]]:
    """Score ``requests`` with ``score`` and draw one option per row (every engine's
    ``choose``): :func:`sample_index` over ``scores.logprobs`` (next-token or summed
    sequence log-probabilities), the renormalised distribution over the options."""
    if len(uniforms) != len(requests):
        raise ValueError(f"need one uniform draw per request: {len(uniforms)} != {len(requests)}")
    scores = score(requests)
    return [
        (s, r.options[sample_index(s.logprobs, temperature, u)])
        for s, r, u in zip(scores, requests, uniforms, strict=True)
    ]
