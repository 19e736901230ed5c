"""Training data derived from transcripts: which turns an agent learns from.

Transcripts are the source of truth (DESIGN.md, decision 5); a dataset is a pure
function of them and the selection rule, so it can always be rebuilt.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import Enum
from typing import Any

from societies.records import Decision


class Selection(str, Enum):
    OWN_SUCCESSES = "own_successes"
    COMMUNITY_SUCCESSES = "community_successes"
    TOP_PAYOFF = "top_payoff"  # the top share of all turns by payoff (Sotopia-pi's filter)


def select_turns(
    good_turns: Iterable[Decision], agent: str, rule: Selection | str
) -> list[Decision]:
    """The turns ``agent`` is distilled on, in transcript order.

    ``good_turns`` are the game's successful turns (``Game.distill_turns``: in the naming
    game the matches, in the donor game the survivors' donations); invalid free-text
    replies are never among them.

    - ``own_successes``: the agent's own successful turns.
    - ``community_successes``: every successful turn by anyone (the community's norm,
      learnt from others' experience as well as one's own).
    """
    rule = Selection(rule)
    good = [d for d in good_turns if d.valid]
    if rule is Selection.OWN_SUCCESSES:
        return [d for d in good if d.agent == agent]
    if rule is Selection.COMMUNITY_SUCCESSES:
        return good
    if rule is Selection.TOP_PAYOFF:
        raise ValueError(
            "selection 'top_payoff' ranks every turn by payoff, not the successful ones: "
            "use trainer.data_builders.top_payoff_turns"
        )
    raise NotImplementedError(rule)  # pragma: no cover - the enum is closed


def sft_examples(turns: Sequence[Decision], max_examples: int) -> list[dict[str, Any]]:
    """TRL prompt/completion rows from the newest ``max_examples`` turns.

    For a choice the completion is the chosen option alone, so the loss (completion-only
    in TRL) lands on exactly the tokens the choice was scored by; for a free-text turn it
    is the reply as generated.
    """
    newest = list(turns)[-max_examples:] if max_examples else list(turns)
    return [
        {
            "prompt": [m.to_dict() for m in d.messages],
            "completion": [
                {"role": "assistant", "content": d.text if d.text is not None else d.action}
            ],
        }
        for d in newest
    ]
