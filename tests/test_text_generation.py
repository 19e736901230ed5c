"""Free-text replies: PEFT's mixed batch and the multi-LoRA engine write the same text.

``generate_replies`` decodes a round's requests in one batch, each row under its agent's
adapter: through the stacked engine (``model.engine=multi_lora``, the default) or
PEFT's mixed batch (``model.engine=peft``). Both run the decode loop of
societies/decoding.py on the same adapters, so greedy replies are equal, and sampled
replies are equal for one seed (the engine's logits equal PEFT's to float32 rounding,
tests/test_multi_lora.py), with rows of different budgets in batches that carry the
generator over.
"""

from __future__ import annotations

import pytest

from societies.population import LoraSpec, PopulationModel
from societies.records import Message
from societies.text_generation import TextRequest, generate_replies
from tests.conftest import save_distinct_adapters

AGENTS = ("agent_00", "agent_01", "agent_02")


@pytest.fixture(scope="module")
def adapter_dirs(tiny_model_path, tmp_path_factory):
    """Three agents with different, non-zero adapters (fresh ones equal the base)."""
    return save_distinct_adapters(tiny_model_path, AGENTS, tmp_path_factory.mktemp("adapters"))


def _requests() -> list[TextRequest]:
    """Every agent twice, prompts of different lengths (left padding), budgets 1 to 12."""
    questions = ["What is 2 + 3?", "Name a colour.", "Say something about the weather today."]
    return [
        TextRequest(agent, (Message("user", question),), budget)
        for budget, (agent, question) in zip(
            (12, 5, 9, 1, 12, 7), [(a, q) for a in AGENTS for q in questions[:2]], strict=True
        )
    ]


@pytest.mark.parametrize("temperature", [0.0, 1.0], ids=["greedy", "sampled"])
def test_peft_and_engine_write_the_same_replies(tiny_model_path, adapter_dirs, temperature):
    requests = _requests()
    replies = {
        engine: generate_replies(
            PopulationModel(
                tiny_model_path,
                list(AGENTS),
                LoraSpec(r=4),
                adapter_dirs=adapter_dirs,
                batch_size=4,  # two batches: the generator carries over between them
                engine=engine,
            ),
            requests,
            temperature=temperature,
            seed=11,
        )
        for engine in ("peft", "multi_lora")
    }
    assert replies["peft"] == replies["multi_lora"]
    assert all(reply.strip() for reply in replies["peft"][:3])  # text was decoded
    if temperature == 0:
        # Rows 0 and 4: the same prompt and budget (12) under agent_00's and agent_02's
        # adapters. Greedy, so only the adapters can make them differ.
        assert requests[0].messages == requests[4].messages
        assert requests[0].max_new_tokens == requests[4].max_new_tokens
        assert replies["peft"][0] != replies["peft"][4]
