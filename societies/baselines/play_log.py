"""What a tabular learner did, seat by seat, kept when a run is recorded (issue #12).

``iql.run`` and ``reinforce.run`` fill a :class:`PlayLog` when given one (``log=``);
without one the loops do no extra work. For every round the log keeps each acting
seat's policy at the moment it acted (IQL: the epsilon-greedy action distribution;
REINFORCE: the softmax), its action, its partner's and its payoff; at every generation
boundary each agent's policy in the empty-history state (the analogue of the society's
prior probe); at the end the consensus after every round (:mod:`convergence`).
:meth:`SeedPlay.decisions` turns a seed's play into the society's ``Decision`` records,
so that the seed is written as an ordinary run directory (``trainer/baseline_run_dir.py``).

Generations: the naming game is one generation, 0 (its episodes only clear memories);
a donor-game episode is a whole game from fresh resources, generation e of the seed as
``DonorGameEnv`` numbers it, so each episode is a generation.

Size: one float per option per seat per round, and every decision is written. The
naming game with N = 24, ten names and 500 rounds is 12,000 decisions per seed: ~1 MB
of arrays, a 7-9 MB transcript (~0.7 KB a line); it grows linearly with the rounds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from societies import seeding
from societies.baselines.convergence import NO_CHOICE
from societies.baselines.donor_play import DonorPlay
from societies.baselines.records import Method
from societies.records import AgentPrior, Decision, Scoring
from societies.seeding import Stream

NO_ACTION = -1  # a partner that does not act (the donor game's recipient)


@dataclass(frozen=True)
class SeedPlay:
    """One seed's recorded play: arrays over its T rounds and M acting seats per round.

    Attributes:
        method: the learner's name, recorded as each decision's ``policy``.
        role: the acting seats' role ("player", "donor").
        generation, round: (T,) each round's generation and index within it.
        seat, partner, pair: (T, M) agent indices of each seat and its partner, and the
            interaction's index within the round.
        probs: (T, M, W) the seat's policy over ``options`` when it acted.
        action, partner_action: (T, M) option indices (``NO_ACTION``: the partner did
            not act).
        payoff: (T, M) the seat's payoff.
        pairing_key: per round, the keys of its pairing stream after the root seed.
        policies: (G + 1, N, W) every agent's empty-history policy at the start of each
            generation and after the last.
        consensus: (T,) the option every agent's most probable choice was after the
            round, or ``NO_CHOICE``.
    """

    method: str
    seed: int
    role: str
    options: tuple[str, ...]
    agents: tuple[str, ...]
    generation: np.ndarray
    round: np.ndarray
    seat: np.ndarray
    partner: np.ndarray
    pair: np.ndarray
    probs: np.ndarray
    action: np.ndarray
    partner_action: np.ndarray
    payoff: np.ndarray
    pairing_key: tuple[tuple[int, ...], ...]
    policies: np.ndarray
    consensus: np.ndarray

    @property
    def generations(self) -> int:
        return len(self.policies) - 1

    def rounds(self, g: int) -> int:
        return int((self.generation == g).sum())

    def decisions(self, g: int, run: str, game: str) -> list[Decision]:
        """Generation ``g``'s decisions as the society records them: no prompt (a table
        has none), the options in the rules' order, ``scoring`` "scripted" (no model
        call) and ``policy`` the method's name."""
        sampling = seeding.stream_seed(self.seed, Stream.SAMPLING, self.method)
        names, options = self.agents, self.options
        out = []
        for t in np.flatnonzero(self.generation == g).tolist():
            pairing = seeding.stream_seed(self.seed, Stream.PAIRING, *self.pairing_key[t])
            rows = zip(
                self.seat[t].tolist(),
                self.partner[t].tolist(),
                self.pair[t].tolist(),
                self.probs[t].tolist(),
                self.action[t].tolist(),
                self.partner_action[t].tolist(),
                self.payoff[t].tolist(),
                strict=True,
            )
            for seat, partner, pair, probs, action, partner_action, payoff in rows:
                out.append(
                    Decision(
                        run=run,
                        generation=g,
                        round=int(self.round[t]),
                        pair=pair,
                        agent=names[seat],
                        partner=names[partner],
                        game=game,
                        messages=(),
                        options=options,
                        option_probs=tuple(probs),
                        option_mass=1.0,
                        action=options[action],
                        partner_action=None
                        if partner_action == NO_ACTION
                        else options[partner_action],
                        payoff=payoff,
                        seed_streams={
                            Stream.PAIRING.value: pairing,
                            Stream.SAMPLING.value: sampling,
                        },
                        role=self.role,
                        scoring=Scoring.SCRIPTED.value,
                        policy=self.method,
                    )
                )
        return out

    def priors(self, g: int) -> tuple[dict[str, AgentPrior], dict[str, AgentPrior]]:
        """Every agent's empty-history policy at the start and at the end of generation
        ``g``, as the society's prior probe records it (one option order: a table has
        no order to average over)."""

        def at(k: int) -> dict[str, AgentPrior]:
            return {
                agent: AgentPrior(agent, dict(zip(self.options, row, strict=True)), 1.0, 1)
                for agent, row in zip(self.agents, self.policies[k].tolist(), strict=True)
            }

        return at(g), at(g + 1)

    def consensus_options(self, g: int) -> list[str | None]:
        """Generation ``g``'s consensus after each round, as an option (None: none)."""
        held = self.consensus[self.generation == g].tolist()
        return [None if c == NO_CHOICE else self.options[c] for c in held]


class PlayLog:
    """The recorded play of every seed a learner ran with this log; :meth:`play` gives one."""

    def __init__(self) -> None:
        self._plays: dict[int, SeedPlay] = {}

    def start(
        self,
        method: Method,
        role: str,
        options: Sequence[str],
        agents: Sequence[str],
        seeds: Sequence[int],
    ) -> Recording:
        """A recording of ``seeds`` played together (the leading axis of every array)."""
        return Recording(self, method, role, options, agents, seeds)

    def play(self, seed: int) -> SeedPlay:
        if seed not in self._plays:
            raise KeyError(f"seed {seed} was not recorded; recorded: {sorted(self._plays)}")
        return self._plays[seed]

    def _keep(self, play: SeedPlay) -> None:
        self._plays[play.seed] = play


class Recording:
    """One learner run's recording of S seeds at once; :meth:`finish` hands it to the log."""

    def __init__(
        self,
        log: PlayLog,
        method: Method,
        role: str,
        options: Sequence[str],
        agents: Sequence[str],
        seeds: Sequence[int],
    ) -> None:
        self._log = log
        self._meta = (Method(method).value, role, tuple(options), tuple(agents))
        self._seeds = [int(s) for s in seeds]
        self._rounds: list[tuple] = []
        self._policies: list[np.ndarray] = []

    def policy(self, probs: np.ndarray) -> None:
        """Every agent's empty-history policy (S, N, W) at a generation boundary."""
        self._policies.append(np.array(probs, dtype=float))

    def round(
        self,
        generation: int,
        round_index: int,
        seat: np.ndarray,
        partner: np.ndarray,
        pair: np.ndarray,
        probs: np.ndarray,
        action: np.ndarray,
        partner_action: np.ndarray,
        payoff: np.ndarray,
        pairing_key: tuple[int, ...],
    ) -> None:
        """One round: (S, M) arrays (``pair`` may be (M,)), ``probs`` (S, M, W)."""
        seat = np.asarray(seat)
        self._rounds.append(
            (
                generation,
                round_index,
                seat,
                np.asarray(partner),
                np.broadcast_to(pair, seat.shape),
                np.array(probs, dtype=float),
                np.asarray(action),
                np.asarray(partner_action),
                np.array(payoff, dtype=float),
                tuple(int(k) for k in pairing_key),
            )
        )

    def naming(
        self,
        episode_rounds: int,
        t: int,
        pairs: np.ndarray,
        probs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
    ) -> None:
        """Round ``t`` of the vectorised naming game: ``pairs`` (S, P, 2), ``probs``
        (S, 2P, W) and ``actions``, ``rewards`` (S, 2P) in seat order (a, b), (b, a), ...
        as ``NamingGame.turns`` orders them. The pairs were drawn from the stream of
        (generation, round) = divmod(t, episode_rounds) (``VecNamingGame.pairs``)."""
        s, p, _ = pairs.shape
        said = actions.reshape(s, p, 2)
        self.round(
            0,
            t,
            pairs.reshape(s, -1),
            pairs[..., ::-1].reshape(s, -1),
            np.repeat(np.arange(p), 2),
            probs,
            said.reshape(s, -1),
            said[..., ::-1].reshape(s, -1),
            rewards.reshape(s, -1),
            divmod(t, episode_rounds),
        )

    def donor(
        self,
        episode: int,
        r: int,
        play: DonorPlay,
        donors: np.ndarray,
        probs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
    ) -> None:
        """Round ``r`` of donor-game episode ``episode`` (one seed), after it was played:
        ``donors`` (K,), ``probs`` (1, K, W), ``actions`` (1, K), every agent's
        ``rewards`` (N,). The recipient does not act; the schedule came from the stream
        of the episode (``DonorGameEnv.reset``)."""
        pair, recipients = play.pairings(r, donors)
        self.round(
            episode,
            r,
            donors[None],
            recipients[None],
            pair[None],
            probs,
            actions,
            np.full(actions.shape, NO_ACTION),
            rewards[donors][None],
            (episode,),
        )

    def finish(self, consensus: np.ndarray) -> None:
        """Hand each seed's play to the log; ``consensus`` (S, T) after every round."""
        method, role, options, agents = self._meta
        columns = list(zip(*self._rounds, strict=True))
        generation, round_index = np.array(columns[0]), np.array(columns[1])
        arrays = [np.stack(c, axis=1) for c in columns[2:9]]  # (S, T, ...)
        policies = np.stack(self._policies, axis=1)  # (S, G + 1, N, W)
        consensus = np.asarray(consensus)
        for k, seed in enumerate(self._seeds):
            seat, partner, pair, probs, action, partner_action, payoff = (a[k] for a in arrays)
            self._log._keep(
                SeedPlay(
                    method=method,
                    seed=seed,
                    role=role,
                    options=options,
                    agents=agents,
                    generation=generation,
                    round=round_index,
                    seat=seat,
                    partner=partner,
                    pair=pair,
                    probs=probs,
                    action=action,
                    partner_action=partner_action,
                    payoff=payoff,
                    pairing_key=tuple(columns[9]),
                    policies=policies[k],
                    consensus=consensus[k],
                )
            )
