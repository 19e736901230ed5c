"""Check ``lora.target_modules`` against a model before any work starts.

PEFT only fails when *no* target matches, and only once the model is loaded; a typo
in one of several names is silently ignored. Here every name must match a linear
layer of the model, checked on an empty ("meta") copy built from its config.json, so
the check costs no weights and no memory.
"""

from __future__ import annotations

from collections.abc import Sequence

ALL_LINEAR = "all-linear"


def check_target_modules(model_path: str, targets: Sequence[str]) -> None:
    """Check that every name in ``targets`` selects a linear layer of the model at
    ``model_path``. ``["all-linear"]`` selects whatever linear layers there are, so it
    needs no look-up and the model's code (torch, transformers: ~8 s) is not imported.

    Args:
        model_path: a directory ``from_pretrained`` loads (config.json is enough).
        targets: ``["all-linear"]``, or module names / paths as PEFT takes them
            (``"q_proj"`` matches every ``...q_proj``).
    Raises:
        ValueError: naming each target that matches no linear layer and listing the
            names that would.
    """
    if list(targets) == [ALL_LINEAR]:
        return
    if ALL_LINEAR in targets:
        raise ValueError(
            f"lora.target_modules={list(targets)}: 'all-linear' must stand alone; "
            "accepted: ['all-linear'] or a list of module names"
        )
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from societies.stacked_lora_linear import linear_layer_paths

    config = AutoConfig.from_pretrained(model_path)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    available = linear_layer_paths(model, None)
    unmatched = [t for t in targets if not linear_layer_paths(model, {t})]
    if unmatched:
        names = sorted({p.rsplit(".", 1)[-1] for p in available})
        raise ValueError(
            f"lora.target_modules: {unmatched} match no linear layer of {model_path} "
            f"({config.model_type}); accepted: ['all-linear'] or names among {names}"
        )
