"""Per-seed result records of the baselines (issue #12, part 5).

Every method reports the same three numbers, defined once: ``converged_round`` and
``winner`` by :mod:`societies.baselines.convergence`, ``final_success`` as the share of
successful interactions over the run's last ``window`` rounds. Game- and method-specific
numbers are optional fields, left out of :meth:`SeedResult.to_dict` when they do not
apply.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from enum import Enum
from typing import Any

import numpy as np

from societies.records import check_record

RESULT_SCHEMA_VERSION = 1


class Method(str, Enum):
    IQL = "iql"
    REINFORCE = "reinforce"
    MNG = "mng"  # the minimal naming game (Baronchelli et al. 2006)


class Game(str, Enum):
    NAMING_GAME = "naming_game"  # Ashery et al. 2025, societies.envs.NamingGameEnv
    DONOR_GAME = "donor_game"  # Vallinder & Hughes 2024, societies.envs.DonorGameEnv
    MINIMAL_NAMING_GAME = "minimal_naming_game"  # Baronchelli et al. 2006


@dataclass(frozen=True)
class RoundSeries:
    """Per-round numbers of one seed; index r is the value after round r."""

    agreement: tuple[float, ...]
    """Share of agents whose most probable choice is the most common one."""
    success: tuple[float, ...] | None = None
    """Naming games: share of the round's interactions that succeeded."""
    mean_donation: tuple[float, ...] | None = None
    """Donor game: mean share given by the round's donors (a punishment gives 0)."""
    total_words: tuple[int, ...] | None = None
    """Minimal naming game: words in all inventories together."""
    distinct_words: tuple[int, ...] | None = None
    """Minimal naming game: different words in use."""

    def named(self) -> dict[str, tuple[float, ...]]:
        """The series that apply, by name."""
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class SeedResult:
    """What one seed of one baseline did."""

    method: Method
    game: Game
    seed: int
    rounds: int
    """Rounds played."""
    converged_round: int | None
    """First round from which consensus held to the end (convergence.py); None if never."""
    winner: str | None
    """The option every agent chose at the end; None without consensus."""
    final_success: float | None
    """Share of successful interactions over the last ``window`` rounds; None for the
    donor game, which has no success."""
    final_mean_resources: float | None = None
    """Donor game: mean resources at the end of the last episode."""
    final_mean_donation: float | None = None
    """Donor game: mean share given in the last episode."""
    peak_words: int | None = None
    """Minimal naming game: most words in all inventories together (Baronchelli's N_w max)."""
    peak_round: int | None = None
    """Minimal naming game: the round the peak was reached in."""
    committed_fraction: float | None = None
    """Minimal naming game with committed agents (Xie et al. 2011): their share."""
    flipped: bool | None = None
    """With committed agents: whether everyone ended holding only the committed word."""
    flip_round: int | None = None
    """With committed agents: ``converged_round`` of that consensus; None if not flipped."""
    series: RoundSeries | None = None
    schema_version: int = RESULT_SCHEMA_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", Method(self.method))
        object.__setattr__(self, "game", Game(self.game))

    def to_dict(self, series: bool = False) -> dict[str, Any]:
        """Plain JSON types; optional fields that do not apply are left out, the per-round
        series unless ``series``."""
        always = {"method", "game", "seed", "rounds", "converged_round", "winner"}
        always |= {"final_success", "schema_version"}
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "series":
                if series and value is not None:
                    out["series"] = {k: list(v) for k, v in value.named().items()}
            elif f.name in always or value is not None:
                out[f.name] = value.value if isinstance(value, Enum) else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SeedResult:
        check_record("baseline result", cls, data, RESULT_SCHEMA_VERSION)
        values = dict(data)
        if values.get("series") is not None:
            values["series"] = RoundSeries(**{k: tuple(v) for k, v in values["series"].items()})
        return cls(**values)


def final_success(success_by_round: np.ndarray, window: int) -> float:
    """Mean of the last ``window`` rounds' success shares (fewer if the run is shorter)."""
    tail = np.asarray(success_by_round, dtype=float)[-window:]
    return float(tail.mean()) if tail.size else float("nan")
