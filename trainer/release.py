"""``folkways release``: one evolved adapter as a self-contained PEFT folder.

A release is what ``PeftModel.from_pretrained(base, folder)`` loads with no folkways
installed (DESIGN.md, decision 10): the adapter weights, its ``adapter_config.json``
with ``base_model_name_or_path`` rewritten from the local cache path to the base
model's hub id, and a model card (``README.md``) naming the base model, the adapter's
lineage back to its initial weights, and its measured prior.

Honest about the base (issue 10, item 6): the embedded model is SmolLM2-135M-Instruct
dequantized from a Q4_1 GGUF, not the hub's full-precision weights, although both have
the hub id PEFT needs. The card and a ``folkways`` block in ``adapter_config.json``
record exactly which weights the adapter was trained on (GGUF file, quantisation,
sha256 of the GGUF and of the cached safetensors) and how far the adapter's prior moves
on the full-precision model, measured only when that model is given
(``--full-precision-base``); otherwise both say it was not measured. Both also name the
machines and software that did the generations the adapter came from (the run's
``environment.jsonl``, :mod:`trainer.provenance`). PEFT 0.21 loads such
a config with a warning that it ignores the unknown key ``folkways``.

``--push`` uploads the finished folder with ``huggingface_hub``; a failed upload leaves
the folder as written and says how to upload it by hand (:func:`push_release`).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from societies.atomic import atomic_directory
from societies.base_weights import BaseKind, BaseWeights, describe_base_weights
from societies.lora_folders import check_adapter_folder
from societies.model_store import ModelNotFoundError
from societies.records import AgentPrior
from trainer.distill_sft import TRAINING_RECORD
from trainer.generation_loop import Experiment
from trainer.lineage import LineageEntry, read_lineage
from trainer.messages import listing
from trainer.model_card import NOT_MEASURED, model_card
from trainer.out_dirs import check_out_dir
from trainer.provenance import distinct_environments, read_environments, work_generation
from trainer.run_dir import adapter_is_saved
from trainer.run_records import read_probes, read_summary

# What a release folder holds; an existing --out holding only these and the `folkways`
# block in adapter_config.json (:func:`_is_release`) is a previous release.
RELEASE_FILES = frozenset(
    {
        "adapter_model.safetensors",
        "adapter_config.json",
        TRAINING_RECORD,
        "lineage.json",
        "README.md",
    }
)


# sysexits.h EX_UNAVAILABLE: the hub could not be reached or refused; the folder is fine.
EXIT_PUSH_FAILED = 69


@dataclass(frozen=True)
class PriorShift:
    """How the adapter's prior moves from the base it was trained on to a full-precision one.

    Both priors are probed here the same way (the run's probe items and option orders,
    empty memory, a batch of this one agent), so the difference is the base weights only.
    """

    full_precision: BaseWeights
    trained_on: AgentPrior
    on_full_precision: AgentPrior

    @property
    def total_variation(self) -> float:
        """``0.5 * sum_o |p(o) - q(o)|``: the largest difference in probability any set
        of options can have between the two priors (0 = same, 1 = disjoint)."""
        keys = set(self.trained_on.probs) | set(self.on_full_precision.probs)
        return 0.5 * sum(
            abs(self.trained_on.probs.get(k, 0.0) - self.on_full_precision.probs.get(k, 0.0))
            for k in keys
        )

    def to_dict(self) -> dict:
        return {
            "measured": True,
            "full_precision_base": self.full_precision.to_dict(),
            "prior_on_trained_on_base": self.trained_on.to_dict(),
            "prior_on_full_precision_base": self.on_full_precision.to_dict(),
            "total_variation": self.total_variation,
        }


@dataclass(frozen=True)
class Release:
    path: Path
    agent: str
    generation: int
    base_model: str
    lineage: list[LineageEntry]
    base_weights: BaseWeights
    prior_shift: PriorShift | None = None

    def to_dict(self) -> dict:
        return {
            "path": str(self.path),
            "agent": self.agent,
            "generation": self.generation,
            "base_model": self.base_model,
            "lineage": [e.to_dict() for e in self.lineage],
            "base_weights": self.base_weights.to_dict(),
            "full_precision_prior_shift": _shift_record(self.base_weights, self.prior_shift),
        }


def release_adapter(
    run_dir: Path,
    agent: str,
    out_dir: Path,
    generation: int | None = None,
    full_precision_base: str | Path | None = None,
) -> Release:
    """Write ``agent``'s adapter after ``generation`` (default: the last complete) to ``out_dir``.

    Everything is read and checked (and the prior shift measured) before ``out_dir`` is
    written; an existing ``out_dir`` is replaced only if it is empty or a previous release.

    Args:
        full_precision_base: a local folder (or a hub id in the local Hugging Face cache)
            holding the full-precision model the run's base stands in for; the adapter's
            prior is probed on it and on the trained-on base (:class:`PriorShift`).
    """
    experiment = Experiment.from_run_dir(run_dir, progress=False)
    layout = experiment.layout
    if agent not in experiment.agents:
        raise FileNotFoundError(f"no agent {agent!r} in {run_dir}; agents: {experiment.agents}")
    completed = layout.completed_generations()
    if not completed:
        raise FileNotFoundError(f"{run_dir} has no completed generation to release")
    generation = completed[-1] if generation is None else generation
    if generation not in completed:
        raise FileNotFoundError(
            f"generation {generation} of {run_dir} is not complete; complete generations: {completed}"
        )
    source = layout.adapter(generation, agent)
    if not adapter_is_saved(source):
        raise FileNotFoundError(
            f"generation {generation} of {run_dir} is marked complete but has no adapter for "
            f"{agent!r} ({source}); the run directory is damaged: restore the folder from a copy"
        )
    check_adapter_folder(source)
    _check_out_dir(Path(out_dir))

    config = experiment.config
    chain = _lineage_chain(read_lineage(layout), layout.relative(source))
    summary = read_summary(layout, generation)
    prior = read_probes(layout, generation)["after"][agent]
    base_model = experiment.base_model_id
    cache_dir = Path(config.model.cache_dir) if config.model.cache_dir else None
    base = describe_base_weights(config.model.name_or_path, cache_dir)
    # The work that made this adapter: every generation up to its own (its lineage).
    environments = distinct_environments(
        [
            r
            for r in read_environments(layout.environment)
            if (g := work_generation(r)) is not None and g <= generation
        ]
    )
    shift = None
    if full_precision_base is not None:
        shift = measure_prior_shift(experiment, agent, source, str(full_precision_base))

    with atomic_directory(Path(out_dir)) as tmp:
        shutil.copy2(source / "adapter_model.safetensors", tmp / "adapter_model.safetensors")
        adapter_config = json.loads((source / "adapter_config.json").read_text())
        adapter_config["base_model_name_or_path"] = base_model  # what PEFT users load
        adapter_config["folkways"] = {  # what it was really trained on
            "agent": agent,
            "generation": generation,
            "run": config.run.name,
            "base_weights": base.to_dict(),
            "full_precision_prior_shift": _shift_record(base, shift),
            "environments": environments,
        }
        (tmp / "adapter_config.json").write_text(
            json.dumps(adapter_config, indent=2, sort_keys=True)
        )
        if (source / TRAINING_RECORD).exists():
            shutil.copy2(source / TRAINING_RECORD, tmp / TRAINING_RECORD)
        (tmp / "lineage.json").write_text(json.dumps([e.to_dict() for e in chain], indent=2))
        card = model_card(
            agent,
            generation,
            base_model,
            config.run.name,
            chain,
            summary,
            prior,
            base,
            shift,
            environments,
        )
        (tmp / "README.md").write_text(card)
    return Release(Path(out_dir), agent, generation, base_model, chain, base, shift)


# ----- the full-precision base -------------------------------------------------------
# Architecture keys that must agree for the adapter to apply to another base at all.
_SHAPE_KEYS = (
    "model_type",
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
)


def measure_prior_shift(experiment, agent: str, adapter: Path, full_precision: str) -> PriorShift:
    """Probe ``agent``'s adapter on the trained-on base and on ``full_precision``."""
    from societies.population import Engine, PopulationModel
    from societies.probes import prior_probe

    fp = describe_base_weights(full_precision)
    if fp.path is None:
        raise ModelNotFoundError(
            f"--full-precision-base {full_precision!r} is a hub id that is not in the local "
            "Hugging Face cache; download it where there is network (`hf download "
            f"{full_precision} --local-dir DIR`) and pass DIR"
        )
    if fp.kind is BaseKind.EMBEDDED_GGUF:
        raise ValueError(
            f"--full-precision-base {full_precision!r} is folkways' dequantized GGUF model, "
            "not full-precision weights; expected a folder holding the hub model's "
            "config.json and *.safetensors"
        )
    _check_same_shape(Path(experiment.model_path), Path(fp.path), full_precision)
    priors = []
    for path in (experiment.model_path, fp.path):
        population = PopulationModel(
            path,
            [agent],
            experiment.lora,
            adapter_dirs={agent: adapter},
            batch_size=experiment.config.model.batch_size,
            # a vLLM run's rollouts were vLLM's; this comparison runs on torch either way
            engine=Engine.MULTI_LORA
            if experiment.config.model.engine is Engine.VLLM
            else experiment.config.model.engine,
        )
        probe = prior_probe(
            population, experiment.game, [agent], experiment.probe_orders, experiment.personas
        )
        priors.append(probe[agent])
        del population  # one base in memory at a time
    return PriorShift(fp, priors[0], priors[1])


def _check_same_shape(trained_on: Path, full_precision: Path, given: str) -> None:
    ours = json.loads((trained_on / "config.json").read_text())
    theirs = json.loads((full_precision / "config.json").read_text())
    differ = [k for k in _SHAPE_KEYS if ours.get(k) != theirs.get(k)]
    if differ:
        shown = ", ".join(f"{k}: {theirs.get(k)!r} (trained on {ours.get(k)!r})" for k in differ)
        raise ValueError(
            f"--full-precision-base {given!r} has another architecture ({shown}); expected "
            "the full-precision version of the model the run was trained on"
        )


def _shift_record(base: BaseWeights, shift: PriorShift | None) -> dict:
    if shift is not None:
        return shift.to_dict()
    if base.kind is BaseKind.EMBEDDED_GGUF:
        return {"measured": False, "reason": NOT_MEASURED}
    return {
        "measured": False,
        "reason": "not measured: no --full-precision-base was given (the run's base is not "
        "the embedded GGUF model)",
    }


def _check_out_dir(out_dir: Path) -> None:
    """Refuse an ``--out`` that is a file, under a file, inside a run directory's
    generations, or a folder holding anything but a previous release."""
    accepted = "expected a new folder, or a previous release (which is replaced)"
    run_dir = _run_dir_holding(out_dir)
    if run_dir is not None:
        raise ValueError(
            f"--out {out_dir} is inside the run directory {run_dir}, whose adapters a release "
            f"would overwrite; {accepted} outside any run directory"
        )
    check_out_dir(out_dir, accepted)  # a file, or inside one
    if out_dir.exists():
        names = sorted(p.name for p in out_dir.iterdir())
        if not names:
            return
        others = [n for n in names if n not in RELEASE_FILES]
        if others:
            raise ValueError(
                f"--out {out_dir} is not empty and not a folkways release (it holds "
                f"{listing(others)}); {accepted}"
            )
        # A run's own adapter folder holds only release file names too (weights, config,
        # training.json): only the `folkways` block release writes identifies a release.
        if not _is_release(out_dir):
            raise ValueError(
                f"--out {out_dir} is not empty and not a folkways release (its "
                f"adapter_config.json has no 'folkways' block); {accepted}"
            )


def _is_release(folder: Path) -> bool:
    """Whether ``folder`` is what :func:`release_adapter` wrote: a model card and an
    ``adapter_config.json`` carrying the ``folkways`` block with agent and generation."""
    try:
        config = json.loads((folder / "adapter_config.json").read_text())
    except (OSError, ValueError):
        return False
    block = config.get("folkways") if isinstance(config, dict) else None
    return (
        isinstance(block, dict)
        and {"agent", "generation"} <= block.keys()
        and (folder / "README.md").is_file()
    )


def _run_dir_holding(path: Path) -> Path | None:
    """The run directory whose ``generation_NNN`` or ``initial_adapters`` folder holds
    ``path`` (or is it), if any; ``None`` for a path outside every run directory."""
    resolved = path.resolve()
    for folder in (resolved, *resolved.parents):
        is_run_part = folder.name == "initial_adapters" or re.fullmatch(
            r"generation_\d{3,}", folder.name
        )
        if is_run_part and (folder.parent / "config.yaml").is_file():
            return folder.parent
    return None


def _lineage_chain(entries: list[LineageEntry], adapter: str) -> list[LineageEntry]:
    """The adapter's ancestry, oldest first: initial adapter, then every step that made
    it (distillation, then evolution), following each entry's first parent; a
    crossover's second parent is named in its row of the card."""
    by_path = {e.adapter: e for e in entries}
    current = by_path.get(adapter)
    chain = []
    while current is not None:
        chain.append(current)
        current = by_path.get(current.parents[0]) if current.parents else None
    return chain[::-1]


# ----- --push ------------------------------------------------------------------------
class PushError(RuntimeError):
    """The upload failed; the message names the finished folder and how to upload it."""


def check_repo_id(repo_id: str) -> None:
    """Refuse a ``--push`` repo id the hub would refuse, before anything is written."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise ValueError(
            f"--push {repo_id!r} is not a valid repo id ({err}); expected 'user-or-org/name'"
        ) from None


def upload_command(repo_id: str, folder: Path, private: bool = False) -> str:
    """The shell command that uploads ``folder`` as the model repo ``repo_id``."""
    command = f"hf upload {shlex.quote(repo_id)} {shlex.quote(str(folder))} . --repo-type model"
    return command + (" --private" if private else "")


def push_release(folder: Path, repo_id: str, *, private: bool = False) -> str:
    """Upload a release folder to the hub model repo ``repo_id`` (created if missing).

    Returns the repo's URL. Raises :class:`PushError` (the folder untouched) when
    ``HF_HUB_OFFLINE`` is set, no token is found, or the hub cannot be reached or refuses.
    """
    from huggingface_hub import HfApi, constants, get_token

    folder = Path(folder).resolve()
    check_adapter_folder(folder)
    by_hand = (
        f"the release folder {folder} is complete; upload it by hand once online: "
        f"`hf auth login`, then `{upload_command(repo_id, folder, private)}`"
    )
    if constants.HF_HUB_OFFLINE:
        raise PushError(
            f"did not upload to {repo_id}: HF_HUB_OFFLINE is set, so huggingface_hub makes no "
            f"network calls; {by_hand} (with HF_HUB_OFFLINE unset)"
        )
    try:
        token = get_token()  # HF_TOKEN, else the token file; raises only if OIDC is set and fails
    except Exception as err:
        raise PushError(f"did not upload to {repo_id}: no usable token ({err}); {by_hand}") from err
    if not token:
        raise PushError(
            f"did not upload to {repo_id}: no Hugging Face token (HF_TOKEN is unset and "
            f"`hf auth login` has not been run); {by_hand}"
        )
    api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        api.upload_folder(
            repo_id=repo_id,
            repo_type="model",
            folder_path=folder,
            commit_message=f"folkways release: {folder.name}",
        )
    except Exception as err:  # httpx2 transport errors, HfHubHTTPError, OSError: one message
        reason = " ".join(f"{type(err).__name__}: {err}".split())
        raise PushError(
            f"upload of {folder} to {repo_id} at {constants.ENDPOINT} failed ({reason}); {by_hand}"
        ) from err
    return str(url)
