"""Training sets built from transcripts: turns to imitate (SFT) and preference pairs (DPO).

Every builder is a pure, deterministic function of typed :class:`Decision` records (the
transcripts are the source of truth, DESIGN.md decision 5), so a dataset can always be
rebuilt. The builders, by the paper each follows:

- :func:`top_payoff_turns` (SFT): the top share of turns by payoff, after Sotopia-π's
  filtering of its own interactions to the best-rated before behaviour cloning (Wang et
  al., ACL 2024).
- Debate (SFT): multiagent fine-tuning's generator and critic data (Subramaniam et al.,
  2025) is :meth:`societies.games.debate_society.DebateSocietyGame.distill_turns`; it is
  not repeated here.
- DPO pairs (Rafailov et al., NeurIPS 2023), one builder per game, each returning
  ``(pairs, skipped)``: :func:`naming_pairs`, :func:`donor_pairs`, :func:`debate_pairs`.
  A context that was considered but gives no valid pair is skipped and counted; what a
  context is differs per game and is stated in each docstring.

A pair's completions are what the agent would emit: an option label for a choice (as in
:func:`trainer.datasets.sft_examples`, so the loss lands on the tokens the choice was
scored by) and the reply as generated for free text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from societies.games import debate
from societies.games.debate_society import DebateSocietyGame
from societies.games.donor_game import GAME_NAME as DONOR_GAME
from societies.games.donor_society import DonorSocietyGame
from societies.games.naming_game import GAME_NAME as NAMING_GAME
from societies.records import Decision, Message


def _turn_key(d: Decision) -> tuple[int, int, int, str]:
    """Transcript order, and the tie-break of every builder: (generation, round, pair, agent)."""
    return (d.generation, d.round, d.pair, d.agent)


def _where(d: Decision) -> str:
    return f"g{d.generation}/r{d.round}/p{d.pair}/{d.agent}"


def _check_game(decisions: Sequence[Decision], game: str, builder: str) -> None:
    other = sorted({d.game for d in decisions} - {game})
    if other:
        raise ValueError(f"{builder} builds from {game!r} decisions; got decisions of {other}")


def _by_generation(decisions: Sequence[Decision]) -> dict[int, list[Decision]]:
    # State (resources, a question's rounds) restarts every generation, so each is built
    # on its own.
    grouped: dict[int, list[Decision]] = {}
    for d in sorted(decisions, key=_turn_key):
        grouped.setdefault(d.generation, []).append(d)
    return grouped


# ---- SFT: top turns by payoff ------------------------------------------------------------


def top_payoff_turns(decisions: Sequence[Decision], share: float) -> list[Decision]:
    """The top ``share`` of turns by payoff, in transcript order.

    After Sotopia-π (Wang et al., "SOTOPIA-π: Interactive Learning of Socially Intelligent
    Language Agents", ACL 2024), which keeps only its best-rated interactions for
    behaviour cloning and self-reinforcement; here the rating is the game's payoff.

    Rule: invalid free-text replies (``valid=False``) are never kept (nothing was parsed
    from them); of the ``n`` valid turns, the ``max(1, round(share * n))`` with the highest
    payoff are kept (Python's ``round``: halves go to the even integer, the same count
    rule as the donor game's survivors). Ties in payoff go to the turn first in
    (generation, round, pair, agent) order, so the earlier turn wins. The result is in
    that same (transcript) order, not in payoff order.

    Raises:
        ValueError: ``share`` outside (0, 1].
    """
    if not 0 < share <= 1:
        raise ValueError(f"share={share!r}; expected a share in (0, 1]")
    valid = [d for d in decisions if d.valid]
    if not valid:
        return []
    keep = max(1, round(share * len(valid)))
    ranked = sorted(valid, key=lambda d: (-d.payoff, *_turn_key(d)))
    return sorted(ranked[:keep], key=_turn_key)


# ---- DPO pairs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PreferencePair:
    """One DPO example: a prompt, a preferred completion and a dispreferred one.

    Attributes:
        prompt: the messages exactly as the deciding agent saw them.
        chosen: the preferred completion (an option label, or a reply's text).
        rejected: the dispreferred completion.
        source: where the pair comes from, ``"<game>: prompt g<generation>/r<round>/
            p<pair>/<agent>"``, followed by ``", chosen from ..."`` or ``", rejected from
            ..."`` when that completion was another decision's.
        agent: whose prompt it is (the agent that learns from it as its own pair).
    """

    prompt: tuple[Message, ...]
    chosen: str
    rejected: str
    source: str
    agent: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompt", tuple(self.prompt))
        if not self.prompt or not all(isinstance(m, Message) for m in self.prompt):
            raise ValueError(
                f"PreferencePair.prompt={self.prompt!r}; expected a non-empty tuple of Message"
            )
        if self.chosen == self.rejected:
            # DPO's loss has no gradient when both completions are the same text.
            raise ValueError(
                f"PreferencePair has chosen == rejected == {self.chosen!r}; expected two "
                "different completions"
            )

    def to_trl(self) -> dict[str, list[dict[str, Any]]]:
        """The pair in TRL's conversational preference format (``DPOTrainer``'s dataset)."""
        return {
            "prompt": [m.to_dict() for m in self.prompt],
            "chosen": [{"role": "assistant", "content": self.chosen}],
            "rejected": [{"role": "assistant", "content": self.rejected}],
        }


def naming_pairs(decisions: Sequence[Decision]) -> tuple[list[PreferencePair], int]:
    """Hindsight pairs of the naming game (Ashery et al. 2025): after a mismatch, the name
    the partner said is preferred to the agent's own, on the agent's own prompt.

    The partner's name is the one answer that would have earned the match payoff in that
    very interaction. Contexts are the mismatched turns: a match gives no pair and is not
    counted; a mismatch is skipped (and counted) when the partner's action is unknown or
    not among the turn's options. Pairs are in transcript order.

    Weakness: the partner's name is right for that partner only; against a partner that
    picks at random (a ``uniform`` scripted seat) the pairs chase noise.

    Returns:
        ``(pairs, skipped)``: one pair per usable mismatch, and the number skipped.
    """
    _check_game(decisions, NAMING_GAME, "naming_pairs")
    pairs, skipped = [], 0
    for d in sorted(decisions, key=_turn_key):
        if d.success:
            continue
        if d.partner_action is None or d.partner_action not in d.options:
            skipped += 1
            continue
        pairs.append(
            PreferencePair(
                prompt=d.messages,
                chosen=d.partner_action,
                rejected=d.action,
                source=f"{d.game}: prompt {_where(d)}",
                agent=d.agent,
            )
        )
    return pairs, skipped


def donor_pairs(
    decisions: Sequence[Decision], game: DonorSocietyGame
) -> tuple[list[PreferencePair], int]:
    """Donor-game pairs: within a round, what a donor that ends richer gave is preferred to
    what a donor that ends poorer gave, on the richer donor's prompt.

    A donor's immediate payoff is minus its gift, so it cannot rank donations; the rank
    here is each agent's final resources at the end of its generation, replayed with
    ``game.replay`` (Vallinder & Hughes 2024 select survivors by the same number).

    Rule, per generation and round: for each donor ``i`` (in pair order), every distinct
    action that a donor ``j`` of the same round took, with ``final[j] < final[i]``
    strictly and an action different from ``i``'s, gives one pair ``(i's prompt, chosen =
    i's action, rejected = j's action)``; when several poorer donors took the same action
    the first in pair order is named in ``source``. Contexts are the donor turns: a donor
    turn with no such ``j`` (the poorest donor of its round, ties in final resources, or
    every poorer donor took the same action) is skipped and counted.

    Weakness: the rejected action was taken by another donor facing another recipient
    (another reputation in its trace), and final resources depend on what an agent
    received as much as on what it gave, so the pair says "richer agents gave this", not
    "this was the better reply to this prompt". It inherits the survivors criterion: when
    free-riding pays, the pairs teach free-riding.

    Args:
        decisions: donor-game decisions of whole rounds, one or several generations.
        game: the game they were played in (its rules replay the resources).

    Returns:
        ``(pairs, skipped)``, pairs in (generation, round, pair, rejected donor) order.
    """
    _check_game(decisions, DONOR_GAME, "donor_pairs")
    pairs, skipped = [], 0
    for ds in _by_generation(decisions).values():
        agents = sorted({d.agent for d in ds} | {d.partner for d in ds if d.partner})
        final = game.replay(agents, ds).resources
        by_round: dict[int, list[Decision]] = {}
        for d in ds:
            by_round.setdefault(d.round, []).append(d)
        for donors in by_round.values():
            for i in donors:
                rejected: dict[str, Decision] = {}
                for j in donors:
                    poorer = final[j.agent] < final[i.agent]
                    if poorer and j.action != i.action and j.action in i.options:
                        rejected.setdefault(j.action, j)
                if not rejected:
                    skipped += 1
                for action, j in rejected.items():
                    pairs.append(
                        PreferencePair(
                            prompt=i.messages,
                            chosen=i.action,
                            rejected=action,
                            source=f"{i.game}: prompt {_where(i)}, rejected from {_where(j)}",
                            agent=i.agent,
                        )
                    )
    return pairs, skipped


def _answer(d: Decision) -> int | None:
    """A debate decision's parsed answer (its ``action``), None for an invalid reply."""
    return int(d.action) if d.valid and d.action else None


def debate_pairs(
    decisions: Sequence[Decision], game: DebateSocietyGame
) -> tuple[list[PreferencePair], int]:
    """Debate pairs: in a question's final round, a reply with the majority answer is
    preferred to a reply with another answer, on the dissenting agent's own prompt.

    The majority is the society's answer in debate (Du et al. 2023) and multiagent
    fine-tuning's training signal (Subramaniam et al. 2025); this turns that signal into
    preferences. The majority is :func:`societies.games.debate.majority_answer` of the
    final round's parsed answers, and it must be a strict plurality: a tie at the top
    (which ``majority_answer`` breaks by smallest ``|value|``, not by merit) gives no pairs.

    Rule, per question (generation, ``round // game.steps``) whose final round is in
    ``decisions``: every final reply whose answer is not the majority (another valid
    answer, or an invalid reply) is rejected, paired with each distinct majority reply
    text as chosen (in (pair, agent) order), on the rejected reply's prompt; completions
    are the replies' ``text``. Contexts are the questions: a question without a strict
    majority (no valid answer, or a tie) or without disagreement (everyone gave the
    majority answer) is skipped and counted.

    Weakness: the majority can be wrong (the pairs then reinforce a confident error), and
    the chosen reply was written to another agent's prompt.

    Returns:
        ``(pairs, skipped)``, pairs in (generation, round, rejected agent) order.
    """
    _check_game(decisions, debate.GAME_NAME, "debate_pairs")
    steps = game.steps
    pairs, skipped = [], 0
    for ds in _by_generation(decisions).values():
        questions: dict[int, list[Decision]] = {}
        for d in ds:
            if d.round % steps == steps - 1:
                questions.setdefault(d.round // steps, []).append(d)
        for final in questions.values():
            answers = [_answer(d) for d in final]
            majority = debate.majority_answer(answers)
            counts = sorted((answers.count(a) for a in set(answers) - {None}), reverse=True)
            tied = len(counts) > 1 and counts[0] == counts[1]
            agree = [d for d in final if _answer(d) == majority and d.text is not None]
            dissent = [d for d in final if _answer(d) != majority and d.text is not None]
            if majority is None or tied or not agree or not dissent:
                skipped += 1
                continue
            chosen = {}
            for d in agree:
                chosen.setdefault(d.text, d)
            for r in dissent:
                for text, c in chosen.items():
                    if text != r.text:
                        pairs.append(
                            PreferencePair(
                                prompt=r.messages,
                                chosen=text,
                                rejected=r.text,
                                source=f"{r.game}: prompt {_where(r)}, chosen from {_where(c)}",
                                agent=r.agent,
                            )
                        )
    return pairs, skipped


def preference_pairs(game, decisions: Sequence[Decision]) -> tuple[list[PreferencePair], int]:
    """The DPO pairs of ``game``'s decisions, by the game's own builder above."""
    if game.name == NAMING_GAME:
        return naming_pairs(decisions)
    if game.name == DONOR_GAME:
        return donor_pairs(decisions, game)
    if game.name == debate.GAME_NAME:
        return debate_pairs(decisions, game)
    raise ValueError(
        f"no DPO pair builder for game {game.name!r}; games with one: "
        f"{[NAMING_GAME, DONOR_GAME, debate.GAME_NAME]}"
    )
