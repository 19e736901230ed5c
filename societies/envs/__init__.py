"""PettingZoo environments of the societies' games, for multi-agent RL baselines.

Each env plays the same rules as the LLM societies (payoffs, pairings and seeded streams
come from :mod:`societies.games` and :mod:`societies.topology`), so an RL population and
an LLM society can be compared round for round.
"""

from societies.envs.donor_env import DonorGameEnv
from societies.envs.naming_env import NamingGameEnv, ObservationMode

__all__ = ["DonorGameEnv", "NamingGameEnv", "ObservationMode"]
