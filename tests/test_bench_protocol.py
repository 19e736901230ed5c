"""The protocol benchmark's count of decoder work: what its ``executed_fraction`` divides."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "scripts" / "benchmarks"))

from bench_protocol import DecoderWork  # noqa: E402


def test_decoder_work_counts_inference_and_training_positions(tiny_model_path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    ids = torch.randint(0, model.config.vocab_size, (3, 4))
    with torch.no_grad():
        expected = model(input_ids=ids).logits
    decoder_class = type(model.get_decoder())
    original = decoder_class.forward
    work = DecoderWork(decoder_class)
    try:
        with torch.no_grad():
            counted = model(input_ids=ids).logits  # 12 positions, no gradients
            model.get_decoder()(ids[:2, :3])  # 6 more, the decoder called directly
        model(input_ids=ids[:1]).logits.sum().backward()  # 4 training positions
        assert work.take() == (18, 4)
        assert work.take() == (0, 0)  # taking resets
        assert torch.equal(counted, expected)  # counting changes nothing
    finally:
        work.remove()
    assert decoder_class.forward is original
