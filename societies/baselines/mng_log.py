"""What the minimal naming game did, kept when a run is recorded (issue #12).

``minimal_naming_game.run`` fills an :class:`MngLog` when given one (``log=``). Each
interaction is recorded as the speaker's decision: its options are its inventory as it
spoke (the word it invented, when that was empty), its policy uniform over them, its
partner the hearer, ``partner_action`` the word when the hearer knew it (a success) and
None otherwise, its payoff 1 for a success and 0 for a failure. The hearer chooses
nothing, so it has no decision.

Cap: whole rounds are recorded while the run's decisions stay within ``max_decisions``
(default 10,000): every interaction of a small population's run (N = 100 converges in
~55 rounds of 50 interactions), the first rounds of a large one (N = 1000: the first 20
of ~100 rounds, the vocabularies growing towards their peak). Later rounds are in the
per-round metrics only. Besides, the words spoken in the last ``window`` rounds are kept
(one list append per interaction) for the majority word.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from societies import seeding
from societies.baselines.convergence import NO_CHOICE
from societies.baselines.records import Game, Method
from societies.metrics import Majority
from societies.population_spec import agent_names
from societies.records import Decision, Scoring
from societies.seeding import Stream

MAX_DECISIONS = 10_000


@dataclass(frozen=True)
class Speech:
    """One interaction: who spoke to whom, the speaker's inventory, the word, the outcome."""

    round: int
    pair: int
    speaker: str
    hearer: str
    inventory: tuple[str, ...]
    word: str
    success: bool


@dataclass(frozen=True)
class MngPlay:
    """One seed's recorded play (see the module docstring for what is kept)."""

    seed: int
    speeches: tuple[Speech, ...]
    """The interactions of the recorded rounds, in order."""
    recorded_rounds: int
    """Rounds whose every interaction is in ``speeches`` (the first ones)."""
    last_words: tuple[str, ...]
    """Every word spoken in the run's last ``window`` rounds."""
    consensus: tuple[str | None, ...]
    """After each round, the word every inventory is (convergence.py); None: none."""

    def decisions(self, run: str) -> list[Decision]:
        streams = {
            s.value: seeding.stream_seed(self.seed, s, Method.MNG.value)
            for s in (Stream.PAIRING, Stream.SAMPLING)
        }
        return [
            Decision(
                run=run,
                generation=0,
                round=x.round,
                pair=x.pair,
                agent=x.speaker,
                partner=x.hearer,
                game=Game.MINIMAL_NAMING_GAME.value,
                messages=(),
                options=x.inventory,
                option_probs=(1.0 / len(x.inventory),) * len(x.inventory),
                option_mass=1.0,
                action=x.word,
                partner_action=x.word if x.success else None,
                payoff=1.0 if x.success else 0.0,
                seed_streams=dict(streams),
                role="speaker",
                scoring=Scoring.SCRIPTED.value,
                policy=Method.MNG.value,
            )
            for x in self.speeches
        ]

    def majority(self) -> Majority:
        """The word spoken most in the last rounds and its share; words tied at the top
        leave no majority word (``Majority.tied``, as ``societies.metrics.majority``)."""
        return Majority.of_counts(Counter(self.last_words))


class MngLog:
    """The recorded play of every seed run with this log; :meth:`play` gives one."""

    def __init__(self, max_decisions: int = MAX_DECISIONS) -> None:
        if not isinstance(max_decisions, int) or max_decisions < 0:
            raise ValueError(f"max_decisions={max_decisions!r}; expected an int >= 0")
        self.max_decisions = max_decisions
        self._plays: dict[int, MngPlay] = {}

    def start(self, seed: int, num_agents: int, per_round: int, window: int) -> MngRecording:
        return MngRecording(self, seed, num_agents, self.max_decisions // per_round, window)

    def play(self, seed: int) -> MngPlay:
        if seed not in self._plays:
            raise KeyError(f"seed {seed} was not recorded; recorded: {sorted(self._plays)}")
        return self._plays[seed]

    def _keep(self, play: MngPlay) -> None:
        self._plays[play.seed] = play


class MngRecording:
    """One seed's recording, filled by the game's loop (word ids; labels at the end)."""

    def __init__(self, log: MngLog, seed: int, num_agents: int, rounds: int, window: int):
        self._log = log
        self._seed = seed
        self._agents = agent_names(num_agents)
        self._rounds = rounds
        self._speeches: list[tuple] = []
        self._last: deque[list[int]] = deque(maxlen=window)

    def records(self, r: int) -> bool:
        """Whether round ``r``'s interactions are recorded (it fits in the cap whole)."""
        return r < self._rounds

    def speak(self, r: int, speaker: int, hearer: int, inventory, word: int, success: bool):
        """One interaction of a recorded round; ``inventory``: the speaker's word ids."""
        self._speeches.append((r, speaker, hearer, tuple(inventory), word, bool(success)))

    def end_round(self, said: list[int]) -> None:
        """The words spoken in the round just played."""
        self._last.append(said)

    def finish(self, held: Sequence[int], label: Callable[[int], str]) -> None:
        """Hand the play to the log: ``held`` the consensus word id after each round."""
        speeches, pair, previous = [], 0, None
        for r, s, h, inventory, word, success in self._speeches:
            pair = pair + 1 if r == previous else 0
            previous = r
            words = tuple(label(w) for w in inventory)
            speeches.append(
                Speech(r, pair, self._agents[s], self._agents[h], words, label(word), success)
            )
        self._log._keep(
            MngPlay(
                seed=self._seed,
                speeches=tuple(speeches),
                recorded_rounds=min(self._rounds, len(held)),
                last_words=tuple(label(w) for said in self._last for w in said),
                consensus=tuple(None if c == NO_CHOICE else label(c) for c in held),
            )
        )
