"""Benchmark (c): SFT distillation of N agents, one TRL run per agent vs one batched pass.

Three paths on the published naming game's prompts (common.naming_game_chats: ~230
tokens, ~90 of them the shared system message and rules): TRL ``SFTTrainer`` one run
per agent, the batched pass running every row whole, and the batched pass running each
agent's shared prompt head once per step (trainer.distill_shared_prefix).

Both paths start from the same saved PEFT adapters (r=8 all-linear, PEFT's own init),
see the same tokenized examples in the same order (TRL with a sequential sampler over
data pre-ordered by ``agent_batches``), with the same lr, schedule, clipping and batch
size, so their final losses should agree to fp32 rounding; the benchmark records both.
Training tokens/s counts real (unpadded) tokens per second of ``train()`` time.

Usage: python scripts/benchmarks/bench_distill.py --n-agents 8 --examples 16
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from common import load_base, machine, naming_game_chats

from societies.model_store import prepare_embedded
from societies.multi_lora import MultiLoraEngine
from trainer.distill_batched import (
    BatchedSftConfig,
    SftExample,
    agent_batches,
    sft_example_from_chat,
    train_batched_sft,
)
from trainer.distill_memory import train_within_budget


def make_examples(tokenizer, agents: list[str], n: int) -> dict[str, list[SftExample]]:
    """Each agent's SFT rows: naming-game prompts answered with one of two names."""
    names, chats = naming_game_chats(n * len(agents))
    data = {}
    for a, agent in enumerate(agents):
        rows = []
        for i in range(n):
            answer = [{"role": "assistant", "content": names[(a + i % 2) % len(names)]}]
            rows.append(sft_example_from_chat(tokenizer, chats[a * n + i], answer))
        data[agent] = rows
    return data


def _trl_run(
    model_path: str,
    adapter_dir: Path,
    examples: list[SftExample],
    config: BatchedSftConfig,
    agent: str,
    tokenizer,
    out_dir: Path,
) -> tuple[float, float]:
    """Train one agent with TRL's SFTTrainer; returns (train seconds, last step loss)."""
    from datasets import Dataset
    from peft import PeftModel
    from torch.utils.data import SequentialSampler
    from transformers import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    class _InOrder(SFTTrainer):
        # The data is pre-ordered by agent_batches: keep that order.
        def _get_train_sampler(self, train_dataset=None):
            return SequentialSampler(
                train_dataset if train_dataset is not None else self.train_dataset
            )

    ordered = [e for batch in agent_batches(examples, config, agent) for e in batch]
    dataset = Dataset.from_list(
        [
            {
                "input_ids": list(e.prompt_ids + e.completion_ids),
                "labels": [-100] * len(e.prompt_ids) + list(e.completion_ids),
            }
            for e in ordered
        ]
    )
    model = PeftModel.from_pretrained(load_base(model_path), str(adapter_dir), is_trainable=True)
    args = SFTConfig(
        output_dir=str(out_dir),
        per_device_train_batch_size=config.batch_size,
        num_train_epochs=1,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_schedule.value,
        max_grad_norm=config.max_grad_norm,
        use_cpu=True,
        bf16=False,
        report_to="none",
        logging_steps=1,
        save_strategy="no",
        max_length=None,
        seed=0,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    trainer = _InOrder(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    trainer.remove_callback(PrinterCallback)  # keep the benchmark's stdout a table
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return seconds, float(losses[-1])


def run(
    n_agents: int = 8,
    examples: int = 16,
    batch_size: int = 8,
    lr: float = 1e-3,
    model_path: str | None = None,
    repeats: int = 2,
    memory_budget_gb: float = 8.0,
) -> dict:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer

    model_path = str(model_path or prepare_embedded())
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    agents = [f"agent{i:02d}" for i in range(n_agents)]
    data = make_examples(tokenizer, agents, examples)
    config = BatchedSftConfig(learning_rate=lr, batch_size=batch_size, num_epochs=1)
    tokens = sum(len(e.prompt_ids) + len(e.completion_ids) for rows in data.values() for e in rows)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        lora = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM")
        init = get_peft_model(load_base(model_path), lora, adapter_name=agents[0])
        for agent in agents[1:]:
            init.add_adapter(agent, lora)
        init.save_pretrained(tmp / "init", selected_adapters=agents)
        dirs = {a: tmp / "init" / a for a in agents}
        del init

        trl_seconds, trl_losses = 0.0, {}
        for agent in agents:
            s, loss = _trl_run(
                model_path, dirs[agent], data[agent], config, agent, tokenizer, tmp / "trl"
            )
            trl_seconds += s
            trl_losses[agent] = loss

        # Warm-up (allocator, thread pools) on a throwaway engine, then both batched
        # paths interleaved ``repeats`` times, each from the initial adapters.
        warm = MultiLoraEngine.from_adapter_dirs(load_base(model_path), dirs)
        train_batched_sft(warm, {agents[0]: data[agents[0]][:batch_size]}, config, 0)
        del warm
        times: dict[bool, list[float]] = {False: [], True: []}
        group_counts: dict[bool, int] = {}
        batched = {}
        for _ in range(repeats):
            for shared in (False, True):
                engine = MultiLoraEngine.from_adapter_dirs(load_base(model_path), dirs)
                path_config = dataclasses.replace(config, shared_prefix=shared)
                start = time.perf_counter()
                # In agent groups under the default memory budget, as a run trains them.
                result, group_counts[shared] = train_within_budget(
                    engine, data, path_config, tokenizer.pad_token_id, memory_budget_gb, "bench"
                )
                times[shared].append(time.perf_counter() - start)
                batched[shared] = (statistics.median(times[shared]), result)
                del engine
    out = {
        "n_agents": n_agents,
        "examples_per_agent": examples,
        "epochs": 1,
        "batch_size": batch_size,
        "learning_rate": lr,
        "repeats": repeats,
        "memory_budget_gb": memory_budget_gb,
        "train_tokens": tokens,
        "prompt_tokens_mean": sum(len(e.prompt_ids) for r in data.values() for e in r)
        / (n_agents * examples),
        "trl_sequential": {
            "seconds": trl_seconds,
            "tokens_per_s": tokens / trl_seconds,
            "final_loss_mean": sum(trl_losses.values()) / n_agents,
        },
    }
    for key, shared in (("batched_plain", False), ("batched", True)):
        seconds, result = batched[shared]
        losses = {a: result.losses[a][-1] for a in agents}
        out[key] = {
            "seconds": seconds,
            "tokens_per_s": tokens / seconds,
            "decoder_tokens": result.tokens,
            "final_loss_mean": sum(losses.values()) / n_agents,
            "final_loss_max_abs_diff_vs_trl": max(abs(losses[a] - trl_losses[a]) for a in agents),
            "vs_trl": trl_seconds / seconds,
            "agent_groups": group_counts[shared],
        }
    saved = sum(batched[True][1].tokens_saved.values())
    out["shared_prefix_tokens_saved"] = saved
    out["shared_prefix_saved_share"] = saved / tokens
    out["shared_prefix_speedup"] = batched[False][0] / batched[True][0]
    out["speedup"] = out["batched"]["vs_trl"]
    out["final_loss_max_abs_diff"] = out["batched"]["final_loss_max_abs_diff_vs_trl"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-agents", type=int, default=8)
    parser.add_argument("--examples", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()
    result = run(args.n_agents, args.examples, args.batch_size, args.lr)
    print(json.dumps({"machine": machine(), "distill": result}, indent=2))


if __name__ == "__main__":
    main()
