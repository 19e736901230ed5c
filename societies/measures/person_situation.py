"""Person vs situation: how much of an agent-by-context table the agent explains.

The old question of personality psychology (Mischel, *Personality and Assessment*, 1968;
Fleeson, "Moving personality beyond the person-situation debate", Curr. Dir. Psychol.
Sci. 13(2), 2004) asked of a population of LLM agents: show every agent the same set of
situations and record one number per (agent, situation) cell; is the table's variance
mostly between agents (persons: their weights), between situations (what the context
says), or in how agents react to particular situations (their interaction)?

With one observation per cell this is the two-way ANOVA without replication (e.g.
D. C. Montgomery, *Design and Analysis of Experiments*, 8th ed. (2013), sec. 5.3.7):
with ``x[i, j]`` for agent i of a and context j of c, row means ``m_i.``, column means
``m_.j`` and grand mean ``m``,

    SS_agent    = c * sum_i (m_i. - m)^2
    SS_context  = a * sum_j (m_.j - m)^2
    SS_residual = sum_ij (x_ij - m_i. - m_.j + m)^2
    SS_total    = sum_ij (x_ij - m)^2 = SS_agent + SS_context + SS_residual.

One observation per cell cannot separate the agent x context interaction from noise,
so the residual is the interaction (plus any noise). The shares ``SS / SS_total`` are
the eta-squared of each term.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

# Cells within this of the grand mean (relative, for |mean| > 1) are equal: the values
# are probabilities computed in float32 (unit roundoff 6e-8; a probability carries a few
# of those from its softmax and sums), so 1e-6 is ~16 roundoffs: differences that small
# are rounding, not agents or contexts.
FLAT_ATOL = 1e-6


@dataclass(frozen=True)
class VarianceShares:
    """Sums of squares of an agent x context table and their shares of the total.

    The shares are NaN when every cell is equal up to float32 rounding (no variance to
    share out); ``to_dict`` writes them as ``null`` (strict JSON).
    """

    agents: int
    contexts: int
    grand_mean: float
    ss_agent: float
    ss_context: float
    ss_residual: float
    ss_total: float
    share_agent: float
    share_context: float
    share_residual: float

    def __post_init__(self) -> None:
        if self.agents < 2 or self.contexts < 2:
            raise ValueError(
                f"a {self.agents} x {self.contexts} table; expected at least 2 agents and "
                "2 contexts (with one of either there is nothing to compare)"
            )

    @property
    def flat(self) -> bool:
        """No variance to share out (the shares are NaN)."""
        return math.isnan(self.share_agent)

    def to_dict(self) -> dict[str, Any]:
        return {k: None if v != v else v for k, v in asdict(self).items()}  # NaN -> null

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VarianceShares:
        return cls(**{k: math.nan if v is None else v for k, v in data.items()})


def decompose(values: Sequence[Sequence[float]] | np.ndarray) -> VarianceShares:
    """Two-way decomposition (no replication) of ``values[agent][context]``.

    Raises:
        ValueError: a ragged, non-2-D, too small or non-finite table.
    """
    try:
        x = np.asarray(values, dtype=np.float64)
    except ValueError:
        raise ValueError(
            "values is ragged; expected a table with one value per (agent, context)"
        ) from None
    if x.ndim != 2:
        raise ValueError(f"values has shape {x.shape}; expected (agents, contexts)")
    if not np.isfinite(x).all():
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(x))[0])
        raise ValueError(f"values[{bad[0]}][{bad[1]}]={x[bad]}; expected finite numbers")
    a, c = x.shape
    if a < 2 or c < 2:
        raise ValueError(
            f"values is a {a} x {c} table; expected at least 2 agents and 2 contexts "
            "(with one of either there is nothing to compare)"
        )
    grand = x.mean()
    row = x.mean(axis=1, keepdims=True)
    col = x.mean(axis=0, keepdims=True)
    ss_agent = float(c * ((row - grand) ** 2).sum())
    ss_context = float(a * ((col - grand) ** 2).sum())
    ss_residual = float(((x - row - col + grand) ** 2).sum())
    ss_total = float(((x - grand) ** 2).sum())
    # A table whose cells are equal up to float32 rounding has no variance to share out:
    # splitting rounding noise gives shares that look real (seen: every cell ~1.0,
    # ss_total 1.7e-18, printed as 0.111 / 0.567 / 0.322).
    flat = float(np.abs(x - grand).max()) <= FLAT_ATOL * max(1.0, abs(float(grand)))

    def share(ss: float) -> float:
        return math.nan if flat else ss / ss_total

    return VarianceShares(
        agents=a,
        contexts=c,
        grand_mean=float(grand),
        ss_agent=ss_agent,
        ss_context=ss_context,
        ss_residual=ss_residual,
        ss_total=ss_total,
        share_agent=share(ss_agent),
        share_context=share(ss_context),
        share_residual=share(ss_residual),
    )
