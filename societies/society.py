"""One round of a society: the game's turns, one batched model call, payoffs.

Game state is rebuilt from the generation's decisions so far (the ``history``), so a
round played after a resume sees exactly what it saw in an uninterrupted run; every
random draw comes from a stream keyed by (generation, round), never from a running
state. Scripted seats act without a model call; a round whose seats are all scripted
needs no model at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from societies.games.protocol import (
    Game,
    Move,
    RequestKind,
    RoundContext,
    Scoring,
    ScriptedPolicy,
    Turn,
    sampled_option,
)
from societies.personas import with_persona
from societies.records import Decision
from societies.seeding import Stream

RECORDED_STREAMS = (Stream.PAIRING, Stream.SAMPLING, Stream.OPTIONS)


def play_round(
    population,
    game: Game,
    agents: Sequence[str],
    history: Sequence[Decision],
    ctx: RoundContext,
    scripted: Mapping[str, ScriptedPolicy] | None = None,
    personas: Mapping[str, str] | None = None,
) -> list[Decision]:
    """Play one round and return its decisions, in the order of the game's turns.

    Args:
        population: a :class:`societies.population.PopulationModel` holding every LLM
            agent's adapter; may be None when every acting seat is scripted.
        history: this generation's decisions before this round (read, not changed).
        scripted: agent -> the scripted policy holding its seat.
        personas: agent -> text put before its system message (societies.personas).
    """
    scripted = scripted or {}
    turns = game.turns(agents, history, ctx)
    if personas:
        turns = [
            replace(t, messages=with_persona(t.messages, personas.get(t.agent))) for t in turns
        ]
    uniforms = ctx.rng(Stream.SAMPLING).random(len(turns)).tolist()
    moves: list[Move | None] = [None] * len(turns)
    llm_choices, llm_texts = [], []
    for i, turn in enumerate(turns):
        policy = scripted.get(turn.agent)
        if policy is not None:
            probs = policy.probs(turn, history)
            action = sampled_option(turn.options, probs, uniforms[i], ctx.temperature)
            moves[i] = Move(action, tuple(probs), 1.0, Scoring.SCRIPTED, policy=policy.name)
        elif turn.kind is RequestKind.CHOICE:
            llm_choices.append(i)
        else:
            llm_texts.append(i)
    if llm_choices:
        moves = _choose(population, turns, llm_choices, uniforms, ctx.temperature, moves)
    if llm_texts:
        moves = _reply(population, game, turns, llm_texts, ctx, moves)
    outcomes = game.outcomes(turns, moves, history, ctx)
    streams = {s.value: ctx.stream_seed(s) for s in RECORDED_STREAMS}
    return [
        Decision(
            run=ctx.run,
            generation=ctx.generation,
            round=ctx.round,
            pair=turn.group,
            agent=turn.agent,
            partner=turn.partner,
            game=game.name,
            messages=turn.messages,
            options=turn.options,
            option_probs=move.option_probs,
            option_mass=move.option_mass,
            action=move.action,
            partner_action=outcome.partner_action,
            payoff=outcome.payoff,
            seed_streams=streams,
            role=turn.role,
            scoring=move.scoring.value,
            policy=move.policy,
            text=move.text,
            valid=move.valid,
        )
        for turn, move, outcome in zip(turns, moves, outcomes, strict=True)
    ]


def _choose(population, turns: Sequence[Turn], rows, uniforms, temperature, moves):
    """One batched call for every LLM choice of the round."""
    from societies.choices import ChoiceRequest

    if population is None:
        raise ValueError("an LLM seat acts, but no population model was loaded")
    requests = [ChoiceRequest(turns[i].agent, turns[i].messages, turns[i].options) for i in rows]
    chosen = population.choose(requests, temperature, [uniforms[i] for i in rows])
    moves = list(moves)
    for i, (scores, action) in zip(rows, chosen, strict=True):
        moves[i] = Move(action, scores.probs, scores.option_mass, Scoring(scores.scoring))
    return moves


def _reply(population, game: Game, turns: Sequence[Turn], rows, ctx: RoundContext, moves):
    """One batched decode for every LLM free-text turn; the game parses each reply."""
    from societies.text_generation import TextRequest, generate_replies

    if population is None:
        raise ValueError("an LLM seat acts, but no population model was loaded")
    requests = [
        TextRequest(turns[i].agent, turns[i].messages, turns[i].max_new_tokens) for i in rows
    ]
    texts = generate_replies(
        population, requests, ctx.temperature, ctx.stream_seed(Stream.SAMPLING)
    )
    moves = list(moves)
    for i, text in zip(rows, texts, strict=True):
        action = game.parse(turns[i], text)
        valid = action is not None
        moves[i] = Move(action or "", (), 0.0, Scoring.GENERATE, text=text, valid=valid)
    return moves
