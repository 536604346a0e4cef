"""Entry point for `python -m core import-torch`: ResNet-18 training step at batch 16 (fp32, Adam),
the setting bench/fidelity.py measures."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from torch_models import resnet


def build():
    model = resnet(18)
    x = torch.randn(16, 3, 224, 224)
    y = torch.randint(0, 1000, (16,))
    return model, (x,), lambda logits: torch.nn.functional.cross_entropy(logits, y)
