"""``model.engine=vllm`` without vLLM installed: import guard, config keys, early failure.

No fake here: these tests need only that vLLM is not importable (forced with
``sys.modules["vllm"] = None``). vLLM itself never runs in the test suite (see
tests/test_vllm_engine.py for the engine's plumbing on a fake).
"""

from __future__ import annotations

import sys

import pytest

from societies.vllm_engine import (
    INSTALL_HINT,
    VllmEngine,
    VllmNotInstalled,
    import_vllm,
)
from tests.conftest import QUICKSTART, tiny_experiment_config, tiny_overrides


# ----- import guard ------------------------------------------------------------------
def test_module_imports_without_vllm_and_engine_says_how_to_install(monkeypatch):
    assert "vllm" not in sys.modules  # importing societies.vllm_engine did not import it
    monkeypatch.setitem(sys.modules, "vllm", None)  # as if not installed, even where it is
    with pytest.raises(VllmNotInstalled) as caught:
        VllmEngine("/some/model", max_loras=4)
    message = str(caught.value)
    assert message.startswith(INSTALL_HINT)
    assert "vllm==0.33.0" in message and "own environment" in message
    assert "torch==2.14.0 and transformers<5.21" in message
    assert ".venv-vllm/bin/pip install --no-deps -e ." in message
    assert isinstance(caught.value, ImportError)
    with pytest.raises(VllmNotInstalled):
        import_vllm()


# ----- config: model.engine=vllm and its keys (no fake, no vLLM) ----------------------
def test_config_accepts_the_vllm_engine_and_its_keys(tmp_path):
    model = tiny_experiment_config(tmp_path, **{"model.engine": "vllm"}).model
    assert model.engine.value == "vllm"
    assert (model.vllm_gpu_memory_utilization, model.vllm_max_loras) == (None, None)
    config = tiny_experiment_config(
        tmp_path,
        **{
            "model.engine": "vllm",
            "model.vllm_gpu_memory_utilization": 1,
            "model.vllm_max_loras": 2,
        },
    )
    assert (config.model.vllm_gpu_memory_utilization, config.model.vllm_max_loras) == (1.0, 2)
    assert config.use_prefix_cache is False  # null prefix_cache: on with multi_lora only


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            {"model.engine": "vllmm"},
            "model.engine='vllmm' is not one of 'multi_lora', 'peft', 'vllm'",
        ),
        (
            {"model.engine": "vllm", "model.vllm_gpu_memory_utilization": 0},
            "model.vllm_gpu_memory_utilization=0.0 is out of range; accepted: null or a share "
            "of GPU memory, 0 < share <= 1",
        ),
        (
            {"model.engine": "vllm", "model.vllm_gpu_memory_utilization": 1.5},
            "model.vllm_gpu_memory_utilization=1.5 is out of range",
        ),
        (
            {"model.engine": "vllm", "model.vllm_gpu_memory_utilization": "half"},
            "model.vllm_gpu_memory_utilization='half' is not float or null",
        ),
        (
            {"model.engine": "vllm", "model.vllm_max_loras": 0},
            "model.vllm_max_loras=0 is out of range; accepted: null (= the number of LLM "
            "agents) or an integer >= 1",
        ),
        (
            {"model.vllm_max_loras": 4},
            "model.vllm_max_loras=4 applies to model.engine=vllm only (got 'multi_lora'); "
            "set model.engine=vllm or model.vllm_max_loras=null",
        ),
        (
            {"model.engine": "peft", "model.vllm_gpu_memory_utilization": 0.5},
            "model.vllm_gpu_memory_utilization=0.5 applies to model.engine=vllm only (got 'peft')",
        ),
        (
            {"model.engine": "vllm", "model.prefix_cache": True},
            "model.prefix_cache=true needs model.engine=multi_lora (got 'vllm')",
        ),
    ],
    ids=[
        "engine",
        "share-0",
        "share-1.5",
        "share-text",
        "loras-0",
        "loras-other-engine",
        "share-other-engine",
        "prefix-cache",
    ],
)
def test_config_rejects_bad_vllm_values_naming_the_key(tmp_path, extra, message):
    from trainer.config import ConfigError

    with pytest.raises(ConfigError) as caught:
        tiny_experiment_config(tmp_path, **extra)
    assert message in str(caught.value)


def test_run_with_vllm_engine_fails_before_the_run_dir_without_vllm(tmp_path, capsys, monkeypatch):
    from trainer.cli import main
    from trainer.config import ConfigError
    from trainer.generation_loop import Experiment

    monkeypatch.setitem(sys.modules, "vllm", None)  # not importable, even where installed
    argv = ["run", str(QUICKSTART), *tiny_overrides(tmp_path, **{"model.engine": "vllm"})]
    code = main([*argv, "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("folkways: error: model.engine=vllm: the vLLM rollout engine needs ")
    assert "vllm==0.33.0, which is not installed" in err and "own environment" in err
    assert ".venv-vllm/bin/pip install vllm==0.33.0" in err
    assert not (tmp_path / "t").exists() and list(tmp_path.iterdir()) == []
    # commands that build a population without preparing a run (probe, person-situation)
    # get the same one-line error
    experiment = Experiment(
        tiny_experiment_config(tmp_path, **{"model.engine": "vllm"}), progress=False
    )
    with pytest.raises(ConfigError, match="^model.engine=vllm: the vLLM rollout engine"):
        experiment.population({})
