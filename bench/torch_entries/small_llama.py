"""Entry point for `python -m core import-torch`: the small Llama train step of issue 13 (h 512, 4 layers,
vocab 32k, b2 s512; bf16 weights, HF transformers' LlamaForCausalLM with SDPA attention). Needs transformers."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fidelity import SMALL_BATCH, SMALL_LLAMA, SMALL_SEQ, _llama


class WithLabels(torch.nn.Module):
    """LlamaForCausalLM called with labels = input ids, so its output carries HF's loss."""

    def __init__(self) -> None:
        super().__init__()
        self.lm = _llama(SMALL_LLAMA, torch.bfloat16)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm(input_ids=ids, labels=ids).loss


def build():
    ids = torch.randint(0, SMALL_LLAMA["vocab_size"], (SMALL_BATCH, SMALL_SEQ))
    return WithLabels(), (ids,)
