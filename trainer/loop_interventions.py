"""The generation loop's interventions: which adapters and scripted seats are in play at
each round (a mixin of :class:`trainer.generation_loop.Experiment`; the schedule's pure
functions are :mod:`trainer.interventions`)."""

from __future__ import annotations

import json
from pathlib import Path

from societies.games.protocol import ScriptedSeat
from societies.records import Decision
from trainer.config import (
    InterventionKind,
)
from trainer.interventions import (
    InterventionEvent,
    adapters_at,
    committed_option,
    committed_seats,
)
from trainer.run_dir import (
    atomic_write_text,
)


class InterventionSteps:
    """Interventions of :class:`Experiment` (uses its config, agents, game and layout)."""

    # ----- interventions --------------------------------------------------------------
    def adapters_at(self, g: int, r: int) -> dict[str, Path]:
        """The adapter folders in play at round ``r`` of generation ``g``."""
        return adapters_at(
            self.config.interventions, g, r, self.start_adapters(g), self.layout.initial_adapter
        )

    def distill_starts(self, g: int) -> dict[str, Path]:
        """What each agent's distillation starts from: its adapter at the generation's end."""
        return self.adapters_at(g, self.config.game.rounds)

    def _committed(self, g: int, r: int, decisions: list[Decision]) -> list[InterventionEvent]:
        """The committed minorities holding seats at (g, r), as events."""
        events = []
        read = self._transcripts(g, decisions)
        for index, iv in enumerate(self.config.interventions):
            if iv.kind is not InterventionKind.COMMITTED_MINORITY or not iv.active(g, r):
                continue
            seats_ = committed_seats(
                index, iv.share, len(self.agents), self.llm_agents, self.config.run.seed
            )
            option = committed_option(iv, self.game.options, read)
            start = iv.round if g == iv.generation else 0
            events.append(
                InterventionEvent(index, iv.kind.value, g, start, seats_, option, iv.policy)
            )
        return events

    def _scripted_at(self, g: int, r: int, decisions: list[Decision]) -> dict:
        """Scripted seats of round ``r``: the config's, then any committed minority's."""
        policies = dict(self.policies)
        for event in self._committed(g, r, decisions):
            if not event.agents:  # share 0 (or below half a seat): the control, no seat
                continue
            iv = self.config.interventions[event.index]
            seat = ScriptedSeat(
                iv.policy, len(event.agents), name=event.option, fraction=iv.fraction
            )
            policy = self.game.scripted_policy(seat)
            policies.update(dict.fromkeys(event.agents, policy))
        return policies

    def _swap_events(self, g: int, r: int) -> list[InterventionEvent]:
        """The ablations and transplants that start at round ``r`` of generation ``g``."""
        events = []
        start = self.start_adapters(g)
        for index, iv in enumerate(self.config.interventions):
            if iv.kind is InterventionKind.COMMITTED_MINORITY or (iv.generation, iv.round) != (
                g,
                r,
            ):
                continue
            ablation = iv.kind is InterventionKind.ABLATION
            events.append(
                InterventionEvent(
                    index,
                    iv.kind.value,
                    g,
                    r,
                    tuple(iv.agents),
                    donor=iv.donor,
                    adapter=None if ablation else self.layout.relative(start[iv.donor]),
                )
            )
        return events

    def _record_interventions(self, g: int, r: int, decisions: list[Decision]) -> None:
        """Write ``interventions.jsonl`` when an intervention starts at round ``r``
        (before the round is played, so a resumed run finds it written)."""
        events = [e for e in self._committed(g, r, decisions) if e.round == r]
        swaps = self._swap_events(g, r)
        if not events and not swaps:
            return
        path = self.layout.interventions(g)
        known = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
        keys = {(k["index"], k["round"]) for k in known}
        fresh = [e.to_dict() for e in [*events, *swaps] if (e.index, e.round) not in keys]
        if fresh:
            atomic_write_text(path, "".join(json.dumps(k) + "\n" for k in known + fresh))
            for event in fresh:
                self.log(f"generation {g} round {r}: intervention {event}")
