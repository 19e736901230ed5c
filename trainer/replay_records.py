"""Typed records of a counterfactual replay (:mod:`trainer.replay`) and the paired
comparison of a replayed transcript with the original (pure: no model, no I/O).

Both transcripts come from the same seed streams, so their difference is paired: a
difference in an outcome is the change's effect on this generation, not sampling noise
between two independent runs (that noise is what ``folkways sweep`` measures over seeds).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from societies import metrics
from societies.games.protocol import Game, mean_payoff
from societies.records import Decision, check_record
from trainer.config import ExperimentConfig

REPLAY_SCHEMA_VERSION = 1
_LOCATION_KEYS = ("run.name", "run.output_dir")  # the replay's location is out_dir


@dataclass(frozen=True)
class ReplaySpec:
    """What a replay changes in generation ``generation`` of the run at ``source``.

    ``swap_adapters[a] = b``: agent a starts with agent b's start adapter (swaps are
    simultaneous: ``{a: b, b: a}`` exchanges them). ``reset_to_start``: these agents
    start with their initial adapter (the base model). ``overrides``: ``key=value``
    config overrides, as for ``folkways run``.
    """

    source: str
    generation: int
    swap_adapters: dict[str, str] = field(default_factory=dict)
    reset_to_start: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()
    schema_version: int = REPLAY_SCHEMA_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "swap_adapters", dict(sorted(self.swap_adapters.items())))
        object.__setattr__(self, "reset_to_start", tuple(sorted(set(self.reset_to_start))))
        object.__setattr__(self, "overrides", tuple(self.overrides))
        both = sorted(set(self.swap_adapters) & set(self.reset_to_start))
        if both:
            raise ValueError(
                f"{both} both swapped and reset; expected each agent changed at most once"
            )
        for override in self.overrides:
            key = override.split("=", 1)[0].strip()
            if key in _LOCATION_KEYS:
                raise ValueError(
                    f"override {override!r}: a replay is written to its out_dir; accepted: "
                    f"any config key but {', '.join(_LOCATION_KEYS)}"
                )

    @property
    def changes(self) -> dict[str, Any]:
        """The spec without its source: two replays of moved copies of a run are the same."""
        data = self.to_dict()
        del data["source"]
        return data

    @property
    def label(self) -> str:
        """A directory-name label of the changes (``same`` when there are none)."""
        parts = [f"swap-{a}-from-{b}" for a, b in self.swap_adapters.items()]
        parts += [f"reset-{a}" for a in self.reset_to_start]
        parts += ["set-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", o) for o in self.overrides]
        label = "--".join(parts) or "same"
        if len(label) > 80:
            digest = hashlib.sha256(json.dumps(self.changes, sort_keys=True).encode()).hexdigest()
            label = f"changes-{digest[:12]}"
        return label

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["reset_to_start"] = list(self.reset_to_start)
        data["overrides"] = list(self.overrides)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReplaySpec:
        check_record("replay", cls, data, REPLAY_SCHEMA_VERSION)
        return cls(**data)


@dataclass(frozen=True)
class DecisionRef:
    """Where a decision sits in a transcript."""

    round: int
    pair: int
    agent: str


@dataclass(frozen=True)
class Outcome:
    """One transcript's headline numbers.

    ``success_rate``: share of interactions whose two actions matched over the whole
    generation (:func:`societies.metrics.success_rate`; NaN without partners).
    ``success_rate_last``: the same over the last ``window`` rounds, the number
    ``folkways run``/``report`` print as "success (last rounds)". ``majority_option``
    and ``majority_share``: the game's, over the last ``window`` rounds (as in the
    summary); ``majority_tied``: the options tied at the top there instead (then no
    majority option; empty in results written before ties were recorded). ``window``: the config's ``metrics.window`` (None in results written
    before it was recorded). ``game_metrics``: the game's own generation metrics.
    """

    decisions: int
    success_rate: float
    majority_option: str | None
    majority_share: float
    mean_payoff: float
    payoff_by_agent: dict[str, float]
    game_metrics: dict[str, float | int | str | None]
    window: int | None = None
    success_rate_last: float | None = None
    majority_tied: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReplayResult:
    """A replay and its paired differences from the original (replay minus original).

    Attributes:
        spec: what was changed.
        out_dir: the replay's directory.
        identical: the replayed transcript equals the original byte for byte.
        first_difference: the first decision, in transcript order, that differs in any
            field (its round is the first round anything differs); None if none does.
        original, replay: the two transcripts' outcomes.
        original_majority_share_in_replay: the share the original's majority option has
            in the replay's window; NaN when the original had no single majority option
            (options tied at the top), and so its ``original_majority_share_delta``.
        *_delta: replay minus original; ``payoff_delta_by_agent`` per agent.
        pinned_names: see the field.
    """

    spec: ReplaySpec
    out_dir: str
    identical: bool
    first_difference: DecisionRef | None
    original: Outcome
    replay: Outcome
    original_majority_share_in_replay: float
    success_rate_delta: float
    majority_share_delta: float
    original_majority_share_delta: float
    mean_payoff_delta: float
    payoff_delta_by_agent: dict[str, float]
    schema_version: int = REPLAY_SCHEMA_VERSION
    pinned_names: tuple[str, ...] = ()
    """The source run's names, set as ``game.names`` in the replayed config because the
    source drew them from ``run.seed`` (:func:`trainer.replay.pinned_names`)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; the shares of an original majority that does not exist (a tie)
        are ``None``, not NaN."""
        data = asdict(self)
        data["spec"] = self.spec.to_dict()
        data["pinned_names"] = list(self.pinned_names)
        for key in _HELD_SHARES:
            data[key] = _json_float(data[key])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReplayResult:
        check_record("replay result", cls, data, REPLAY_SCHEMA_VERSION)
        first = data["first_difference"]
        return cls(
            **{
                **data,
                "spec": ReplaySpec.from_dict(data["spec"]),
                "first_difference": None if first is None else DecisionRef(**first),
                "original": _outcome(data["original"]),
                "replay": _outcome(data["replay"]),
                "pinned_names": tuple(data.get("pinned_names", ())),
                **{k: math.nan if data[k] is None else data[k] for k in _HELD_SHARES},
            }
        )


def outcome(
    game: Game, config: ExperimentConfig, agents: Sequence[str], decisions: Sequence[Decision]
) -> Outcome:
    """The headline numbers of one transcript of ``game`` played under ``config``."""
    cfg = config
    measured = game.generation_metrics(
        decisions,
        rounds=cfg.game.rounds,
        window=cfg.metrics.window,
        population_size=cfg.population.size,
    )
    payoffs = mean_payoff(agents, decisions)
    last = [d for d in decisions if d.round >= cfg.game.rounds - cfg.metrics.window]
    return Outcome(
        decisions=len(decisions),
        success_rate=metrics.success_rate(decisions),
        majority_option=measured.majority_option,
        majority_share=measured.majority_share,
        mean_payoff=sum(d.payoff for d in decisions) / len(decisions)
        if decisions
        else float("nan"),
        payoff_by_agent=payoffs,
        game_metrics=dict(measured.values),
        window=cfg.metrics.window,
        success_rate_last=metrics.success_rate(last),
        majority_tied=measured.majority_tied,
    )


def _outcome(data: dict[str, Any]) -> Outcome:
    return Outcome(**{**data, "majority_tied": tuple(data.get("majority_tied", ()))})


def first_difference(
    original: Sequence[Decision], replayed: Sequence[Decision]
) -> DecisionRef | None:
    """The first decision, in transcript order, that differs in any field (or is missing
    from one of the two)."""
    for a, b in zip(original, replayed, strict=False):
        if a != b:
            return DecisionRef(a.round, a.pair, a.agent)
    if len(original) != len(replayed):
        d = (original if len(original) > len(replayed) else replayed)[
            min(len(original), len(replayed))
        ]
        return DecisionRef(d.round, d.pair, d.agent)
    return None


def compare(
    spec: ReplaySpec,
    out_dir: str,
    game: Game,
    config: ExperimentConfig,
    agents: Sequence[str],
    original: Sequence[Decision],
    replayed: Sequence[Decision],
    *,
    identical: bool,
    pinned_names: Sequence[str] = (),
) -> ReplayResult:
    """Paired differences of a replayed transcript from the original.

    ``identical`` says whether the two transcript files are equal byte for byte (the
    caller reads them); ``config`` is the replay's (its rounds and window).
    """
    before = outcome(game, config, agents, original)
    after = outcome(game, config, agents, replayed)
    window_start = config.game.rounds - config.metrics.window
    window = [d for d in replayed if d.round >= window_start]
    held = before.majority_option  # None on a tie: no original majority to follow
    share_held = (
        sum(d.action == held for d in window) / len(window) if window and held else float("nan")
    )
    return ReplayResult(
        spec=spec,
        out_dir=out_dir,
        identical=identical,
        first_difference=first_difference(original, replayed),
        original=before,
        replay=after,
        original_majority_share_in_replay=share_held,
        success_rate_delta=after.success_rate - before.success_rate,
        majority_share_delta=after.majority_share - before.majority_share,
        original_majority_share_delta=share_held - before.majority_share,
        mean_payoff_delta=after.mean_payoff - before.mean_payoff,
        payoff_delta_by_agent={
            a: after.payoff_by_agent[a] - before.payoff_by_agent[a] for a in agents
        },
        pinned_names=tuple(pinned_names),
    )


@dataclass(frozen=True)
class AgentEffect:
    """One agent's effect on a generation: original minus the replay with that agent
    reset to its initial adapter (``trainer.replay.attribution``).

    ``success_rate_effect`` > 0: the agent's adapter raised the success rate;
    ``majority_share_effect`` > 0: it raised the share of the original majority option
    (in the last ``metrics.window`` rounds; NaN when the original's options tied at the
    top); ``replay_majority_option``: the convention without it, or
    ``replay_majority_tied``: the options tied at the top without it. ``first_difference_round``: None when the reset changed nothing (e.g.
    the agent's start adapter was already its initial one).
    """

    agent: str
    success_rate_effect: float
    majority_share_effect: float
    mean_payoff_effect: float
    replay_majority_option: str | None
    first_difference_round: int | None
    out_dir: str
    replay_majority_tied: tuple[str, ...] = ()

    @classmethod
    def of(cls, agent: str, result: ReplayResult) -> AgentEffect:
        first = result.first_difference
        return cls(
            agent=agent,
            # 0.0 - x, not -x: no effect prints as 0.000, not -0.000.
            success_rate_effect=0.0 - result.success_rate_delta,
            majority_share_effect=0.0 - result.original_majority_share_delta,
            mean_payoff_effect=0.0 - result.mean_payoff_delta,
            replay_majority_option=result.replay.majority_option,
            first_difference_round=None if first is None else first.round,
            out_dir=result.out_dir,
            replay_majority_tied=result.replay.majority_tied,
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["majority_share_effect"] = _json_float(self.majority_share_effect)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AgentEffect:
        share = data.get("majority_share_effect")
        return cls(
            **{
                **data,
                "majority_share_effect": math.nan if share is None else share,
                "replay_majority_tied": tuple(data.get("replay_majority_tied", ())),
            }
        )


# ReplayResult's shares of the original's majority option: NaN when it had none (a tie).
_HELD_SHARES = ("original_majority_share_in_replay", "original_majority_share_delta")


def _json_float(x: float) -> float | None:
    return None if math.isnan(x) else x
