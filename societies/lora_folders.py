"""Standard PEFT LoRA folders: read them into factors, write factors back into them
(and read the same factors out of a live ``PeftModel``).

A folder is ``adapter_config.json`` + ``adapter_model.safetensors`` as
``PeftModel.save_pretrained`` writes it, so adapters trained by the stacked engine
load with plain PEFT and released adapters need nothing from folkways.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

PEFT_PREFIX = "base_model.model."


def lora_scaling(config: Mapping) -> float:
    """The LoRA output scale: alpha / r, or alpha / sqrt(r) with rsLoRA."""
    r = int(config["r"])
    return float(config["lora_alpha"]) / (r**0.5 if config.get("use_rslora") else r)


@dataclass(frozen=True)
class LoadedAdapter:
    scaling: float
    rank: int
    dropout: float
    config: dict
    factors: dict[str, tuple[torch.Tensor, torch.Tensor]]  # path -> (A [r,in], B [out,r])


# What to do about a damaged adapter in a run directory: resuming re-creates a missing
# adapter from the seeds, but only in a generation that is not marked COMPLETE.
_RECREATE = (
    "restore it from a copy, or delete the folder and re-run `folkways run` with the run's "
    "config.yaml to re-create it (for generation_NNN/adapters/<agent>, also delete "
    "generation_NNN/COMPLETE)"
)


def check_adapter_folder(path: str | Path) -> dict:
    """The adapter's config, after checking the folder is whole; cheap (headers only).

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: ``adapter_config.json`` is not JSON, or ``adapter_model.safetensors``
            is truncated or not a safetensors file (its header records every tensor's
            byte range, so truncation is caught; a bit flip inside the data is not).
    """

    path = Path(path)
    config_file, weights_file = path / "adapter_config.json", path / "adapter_model.safetensors"
    if not config_file.is_file() or not weights_file.is_file():
        raise FileNotFoundError(
            f"adapter folder {str(path)!r} must hold adapter_config.json and "
            "adapter_model.safetensors (as PeftModel.save_pretrained writes); folkways loads "
            "weights only from safetensors (a pickled adapter_model.bin can run code)"
        )
    try:
        config = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(
            f"adapter folder {path} is corrupted: adapter_config.json is not JSON ({err}); "
            + _RECREATE
        ) from None
    problem = safetensors_problem(weights_file)
    if problem:
        raise ValueError(
            f"adapter folder {path} is corrupted: adapter_model.safetensors {problem}; " + _RECREATE
        )
    return config


def safetensors_problem(path: str | Path) -> str | None:
    """Why ``path`` is not a whole safetensors file, or None; reads the header only.

    The header records every tensor's byte range, so truncation is caught; a bit flip
    inside the data is not.
    """
    from safetensors import SafetensorError, safe_open

    try:  # numpy: the same header check without importing torch
        with safe_open(str(path), framework="numpy"):
            return None
    except SafetensorError as err:
        return f"is truncated or not a safetensors file ({err})"


def read_adapter_folder(path: str | Path) -> LoadedAdapter:
    """Read a PEFT LoRA folder (``adapter_config.json`` + ``adapter_model.safetensors``)."""
    from safetensors.torch import load_file

    path = Path(path)
    config = check_adapter_folder(path)
    weights_file = path / "adapter_model.safetensors"
    if config.get("peft_type", "LORA") != "LORA":
        raise ValueError(f"{path}: peft_type={config.get('peft_type')!r}; only 'LORA' is accepted")
    for flag in ("use_dora", "fan_in_fan_out"):
        if config.get(flag):
            raise ValueError(f"{path}: {flag}=True is not supported by the stacked engine")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise ValueError(f"{path}: rank_pattern/alpha_pattern are not supported (one r, one alpha)")
    rank = int(config["r"])
    scaling = lora_scaling(config)
    tensors = load_file(str(weights_file))
    factors: dict[str, list] = {}
    for key, value in tensors.items():
        for part, slot in ((".lora_A.weight", 0), (".lora_B.weight", 1)):
            if key.endswith(part):
                module = key[: -len(part)].removeprefix(PEFT_PREFIX)
                factors.setdefault(module, [None, None])[slot] = value
                break
        else:
            raise ValueError(
                f"{path}: unexpected tensor {key!r}; only lora_A/lora_B weights are supported"
            )
    return LoadedAdapter(
        scaling,
        rank,
        float(config.get("lora_dropout", 0.0)),
        config,
        {k: tuple(v) for k, v in factors.items()},
    )


def read_peft_model(
    peft_model, adapter_names: Sequence[str] | None = None
) -> tuple[dict[str, LoadedAdapter], list[str]]:
    """The named LoRA adapters of a live ``PeftModel`` (default: all), as
    :func:`read_adapter_folder` reads a folder, and the module paths that carry any of them.

    Paths name each LoRA layer's ``base_layer`` inside ``peft_model.get_base_model()``
    (what an engine built on the PeftModel wraps), in the model's module order.
    """
    from peft.tuners.lora import LoraLayer

    names = list(adapter_names) if adapter_names is not None else list(peft_model.peft_config)
    unknown = [n for n in names if n not in peft_model.peft_config]
    if unknown:
        raise KeyError(
            f"adapters {unknown} not in the PeftModel (has {list(peft_model.peft_config)})"
        )
    factors: dict[str, dict[str, tuple[torch.Tensor, torch.Tensor]]] = {n: {} for n in names}
    scalings: dict[str, float] = {}
    ranks: dict[str, int] = dict.fromkeys(names, 0)
    dropouts: dict[str, float] = dict.fromkeys(names, 0.0)
    modules = []
    for path, module in peft_model.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        present = [n for n in names if n in module.lora_A]
        if not present:
            continue
        base_path = path.removeprefix(PEFT_PREFIX) + ".base_layer"
        modules.append(base_path)
        for n in present:
            if module.use_dora.get(n, False):
                raise ValueError(
                    f"adapter {n!r} uses DoRA, which the stacked engine does not support"
                )
            a, b = module.lora_A[n].weight.detach(), module.lora_B[n].weight.detach()
            factors[n][base_path] = (a, b)
            scalings[n] = float(module.scaling[n])
            ranks[n] = max(ranks[n], a.shape[0])
            dropouts[n] = max(dropouts[n], float(getattr(module.lora_dropout[n], "p", 0.0)))
    if not modules:
        raise ValueError("the PeftModel has no LoRA layers for the requested adapters")
    missing = [n for n in names if not factors[n]]
    if missing:
        raise ValueError(f"adapters {missing} have no LoRA layer in the PeftModel")
    adapters = {
        n: LoadedAdapter(
            scalings[n], ranks[n], dropouts[n], peft_model.peft_config[n].to_dict(), factors[n]
        )
        for n in names
    }
    return adapters, modules


def write_adapter_folder(
    out_dir: str | Path, factors: Mapping[str, tuple[torch.Tensor, torch.Tensor]], config: Mapping
) -> Path:
    """Write ``{module path: (A [r, in], B [out, r])}`` and ``config`` as a PEFT folder.

    Factors wider than ``config["r"]`` (zero-padded stacks) are cut back to ``r``.
    """
    from safetensors.torch import save_file

    config = dict(config)
    if isinstance(config.get("target_modules"), (list, tuple, set)):
        config["target_modules"] = sorted(config["target_modules"])
    r = int(config["r"])
    tensors = {}
    for path, (a, b) in factors.items():
        key = PEFT_PREFIX + path.removesuffix(".base_layer")
        tensors[key + ".lora_A.weight"] = a[:r].contiguous()
        tensors[key + ".lora_B.weight"] = b[:, :r].contiguous()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config.setdefault("peft_type", "LORA")
    (out_dir / "adapter_config.json").write_text(
        json.dumps(_jsonable(config), indent=2, sort_keys=True)
    )
    save_file(tensors, str(out_dir / "adapter_model.safetensors"), metadata={"format": "pt"})
    return out_dir


def canonicalize_adapter_config(folder: str | Path) -> None:
    """Rewrite ``folder/adapter_config.json`` with sorted keys and ``target_modules``.

    PEFT keeps ``target_modules`` as a set and writes it in hash order, which changes
    with every process (PYTHONHASHSEED): the same adapter saved by a resumed run would
    differ from the uninterrupted run's.
    """
    path = Path(folder) / "adapter_config.json"
    config = json.loads(path.read_text())
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
    path.write_text(json.dumps(config, indent=2, sort_keys=True))


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (set, tuple, list)):
        items = [_jsonable(v) for v in value]
        return sorted(items) if isinstance(value, set) else items
    if hasattr(value, "value"):  # enums
        return value.value
    return value
