"""Tables of per-option values (Q-values, policy logits) for tabular learners.

One row per (seed, agent, state) met so far, allocated on first visit, so a history
state with a huge nominal space (the naming game's 484^5 histories) costs only the
states that occur. The stateless case is the same table with one constant state.
"""

from __future__ import annotations

import numpy as np


class ValueTable:
    """``values[row]`` holds one number per option; :meth:`rows` finds or adds the rows.

    Args:
        num_options: values per row (W).
        init: value of a fresh row.
    """

    def __init__(self, num_options: int, init: float = 0.0) -> None:
        self.num_options = num_options
        self.init = float(init)
        self._values = np.full((1024, num_options), self.init)
        self._index: dict[bytes, int] = {}

    @property
    def values(self) -> np.ndarray:
        """The rows allocated so far (a view: writes go to the table)."""
        return self._values[: len(self._index)]

    def __len__(self) -> int:
        return len(self._index)

    def rows(self, agents: np.ndarray, states: np.ndarray) -> np.ndarray:
        """Row of each (seed, agent, state): ``agents`` (S, K), ``states`` (S, K, D) -> (S, K).

        The seed is the position on the first axis; rows never move once given.
        """
        s, k = agents.shape
        seed_col = np.broadcast_to(np.arange(s)[:, None, None], (s, k, 1))
        keys = np.concatenate(
            [seed_col, agents[..., None], states], axis=-1, dtype=np.int32
        ).reshape(s * k, -1)
        keys = np.ascontiguousarray(keys)
        void = keys.view(np.dtype((np.void, keys.itemsize * keys.shape[1]))).ravel()
        out = np.empty(s * k, dtype=np.int64)
        index = self._index
        for i, key in enumerate(void.tolist()):
            row = index.get(key)
            if row is None:
                row = index[key] = len(index)
                if row == len(self._values):
                    grown = np.full((2 * row, self.num_options), self.init)
                    grown[:row] = self._values
                    self._values = grown
            out[i] = row
        return out.reshape(s, k)
