"""The rows an adapter is distilled on in one generation, as the config asks.

Four choices meet here (README, "Distillation and evolution options"):

- the objective (``distill.method``): SFT rows ``{"prompt", "completion"}`` or DPO pairs
  ``{"prompt", "chosen", "rejected"}`` (:mod:`trainer.data_builders`);
- whose experience (``distill.selection``): the agent's own successful turns, the
  community's, or the top share of all turns by payoff; for DPO the agent's own pairs
  (its prompts) or everyone's;
- the adapter's scope (``distill.scope``): each agent's rows, or one community adapter
  trained on the union of everyone's;
- the generations (``distill.data_policy``): replace, accumulate or anchor
  (:mod:`trainer.data_policies`).

Every function is pure given the transcripts, so the rows of any adapter can be rebuilt
and checked against ``data_sha256`` in ``lineage.json``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from societies.records import Decision
from societies.seeding import Stream, stream_seed
from trainer.data_builders import preference_pairs, top_payoff_turns
from trainer.data_policies import DataPolicy, policy_rows
from trainer.datasets import Selection, select_turns, sft_examples

COMMUNITY = "community"  # the "agent" whose rows are everyone's (distill.scope=community)


@dataclass(frozen=True)
class TrainingRows:
    """What one adapter learns from in one generation.

    Attributes:
        rows: TRL rows, oldest generation first.
        generations: the generations whose transcripts the rows come from.
        skipped: DPO contexts considered but without a valid pair (summed over generations).
    """

    rows: list[dict[str, Any]]
    generations: list[int]
    skipped: int = 0

    @property
    def sha256(self) -> str:
        """A hash of the rows as canonical JSON; "" for no rows."""
        if not self.rows:
            return ""
        text = json.dumps(self.rows, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def generation_rows(
    game, decisions: Sequence[Decision], agent: str, distill
) -> tuple[list[dict[str, Any]], int]:
    """``agent``'s rows from one generation's ``decisions`` (the newest
    ``distill.max_examples``), and the DPO contexts skipped.

    ``agent`` may be :data:`COMMUNITY`: the union of every agent's rows, in transcript
    order without duplicates (with ``community_successes`` every agent's rows are the
    same, so the union is one copy), capped the same way.
    """
    method = getattr(distill.method, "value", distill.method)
    if method == "dpo":
        pairs, skipped = preference_pairs(game, decisions)
        if agent != COMMUNITY and Selection(distill.selection) is Selection.OWN_SUCCESSES:
            pairs = [p for p in pairs if p.agent == agent]
        return [p.to_trl() for p in pairs][-distill.max_examples :], skipped
    rule = Selection(distill.selection)
    if rule is Selection.TOP_PAYOFF:
        turns = top_payoff_turns(decisions, distill.top_share)
    elif agent == COMMUNITY:
        turns = [d for d in game.distill_turns(decisions) if d.valid]
    else:
        turns = select_turns(game.distill_turns(decisions), agent, rule)
    return sft_examples(turns, distill.max_examples), 0


def needed_generations(policy: DataPolicy | str, generation: int) -> list[int]:
    """The generations whose transcripts ``policy`` reads at ``generation``."""
    policy = DataPolicy(policy)
    if policy is DataPolicy.ACCUMULATE:
        return list(range(generation + 1))
    if policy is DataPolicy.ANCHOR and generation > 0:
        return [0, generation]
    return [generation]


def training_rows(
    game,
    agent: str,
    generation: int,
    transcripts: Callable[[int], Sequence[Decision]],
    distill,
    root_seed: int,
) -> TrainingRows:
    """The rows ``agent`` (or :data:`COMMUNITY`) is distilled on in ``generation``.

    ``transcripts(g)`` gives generation g's decisions; only the generations the data
    policy needs are read. The anchor's generation-0 rows are drawn from the
    ``Stream.ANCHOR`` stream keyed by (generation, agent): a fresh subset each generation.
    """
    policy = DataPolicy(distill.data_policy)
    per_generation, skipped = {}, 0
    for g in needed_generations(policy, generation):
        per_generation[g], skipped_g = generation_rows(game, transcripts(g), agent, distill)
        skipped += skipped_g
    rows = policy_rows(
        policy,
        per_generation,
        generation,
        distill.anchor_share,
        stream_seed(root_seed, Stream.ANCHOR, generation, agent),
    )
    chosen = {id(row) for row in rows}
    used = sorted(g for g, rs in per_generation.items() if any(id(r) in chosen for r in rs))
    return TrainingRows(rows, used, skipped)
