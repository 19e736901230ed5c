"""One round of a society: pair agents, prompt them, one batched model call, payoffs.

Memory is rebuilt from transcripts (:func:`memories_from_transcript`), so a round
played after a resume sees exactly what it saw in an uninterrupted run; every random
draw comes from a stream keyed by (generation, round), never from a running state.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from societies import seeding
from societies.games.naming_game import Interaction, NamingGame
from societies.population import ChoiceRequest, PopulationModel
from societies.records import Decision
from societies.seeding import Stream
from societies.topology import Topology, sample_pairs


@dataclass(frozen=True)
class RoundSpec:
    """Where a round sits in the run and how it is played."""

    run: str
    generation: int
    round: int
    root_seed: int
    pairs_per_round: int
    temperature: float
    topology: Topology = Topology.COMPLETE


def interaction_of(decision: Decision) -> Interaction:
    """What ``decision.agent`` remembers of the interaction."""
    return Interaction(own=decision.action, partner=decision.partner_action, payoff=decision.payoff)


def memories_from_transcript(
    decisions: Iterable[Decision], agents: Sequence[str]
) -> dict[str, list[Interaction]]:
    """Each agent's interactions in transcript order (oldest first)."""
    memory: dict[str, list[Interaction]] = {a: [] for a in agents}
    for d in decisions:
        memory[d.agent].append(interaction_of(d))
    return memory


def play_round(
    population: PopulationModel,
    game: NamingGame,
    agents: Sequence[str],
    memory: dict[str, list[Interaction]],
    spec: RoundSpec,
) -> list[Decision]:
    """Play one round and return its decisions (two per pair, in pair order).

    ``memory`` is read, not changed: the caller appends the round's transcript and
    rebuilds or extends memory from it.
    """
    g, r, seed = spec.generation, spec.round, spec.root_seed
    pairs = sample_pairs(
        spec.topology, agents, spec.pairs_per_round, seeding.rng(seed, Stream.PAIRING, g, r)
    )
    requests: list[ChoiceRequest] = []
    for agent, _partner in _seats(pairs):
        options = game.shuffled_options(seeding.rng(seed, Stream.OPTIONS, g, r, agent))
        requests.append(ChoiceRequest(agent, game.prompt(memory[agent], options), options))
    uniforms = seeding.rng(seed, Stream.SAMPLING, g, r).random(len(requests))
    choices = population.choose(requests, spec.temperature, uniforms.tolist())

    streams = {
        s.value: seeding.stream_seed(seed, s, g, r)
        for s in (Stream.PAIRING, Stream.SAMPLING, Stream.OPTIONS)
    }
    decisions: list[Decision] = []
    for pair_index in range(len(pairs)):
        seat_a, seat_b = 2 * pair_index, 2 * pair_index + 1
        for me, other in ((seat_a, seat_b), (seat_b, seat_a)):
            request, (scores, action) = requests[me], choices[me]
            partner_action = choices[other][1]
            decisions.append(
                Decision(
                    run=spec.run,
                    generation=g,
                    round=r,
                    pair=pair_index,
                    agent=request.agent,
                    partner=requests[other].agent,
                    game=game.name,
                    messages=request.messages,
                    options=request.options,
                    option_probs=scores.probs,
                    option_mass=scores.option_mass,
                    action=action,
                    partner_action=partner_action,
                    payoff=game.payoff(action, partner_action),
                    seed_streams=streams,
                )
            )
    return decisions


def _seats(pairs: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Both sides of every pair, in order: (a, b), (b, a), ..."""
    return [seat for a, b in pairs for seat in ((a, b), (b, a))]
