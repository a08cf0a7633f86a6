"""The LoRA factors A and B, and the two ways of adding them to a Linear layer (notebooks 03 and 04)."""
import math

import torch
from torch import nn

from .config import INITS, lora_scaling


class LoRAFactors(nn.Module):
    """A (r, in) and B (out, r) with scaling alpha / r: the update scaling * B @ A, shaped like W (notebook 03).

    B starts at zero, so B @ A = 0. A starts random, named as in PEFT's init_lora_weights: "kaiming"
    (PEFT's default: kaiming-uniform, a = sqrt(5), i.e. U(-1/sqrt(in), 1/sqrt(in))), "gaussian"
    (PEFT's: N(0, 1/r), a standard deviation of 1/r), or "standard_normal" (the source documents' N(0, 1)).
    """

    def __init__(self, in_features, out_features, r, alpha=1.0, init="kaiming", rslora=False):
        super().__init__()
        self.lora_A = nn.Parameter(torch.empty(r, in_features))
        self.lora_B = nn.Parameter(torch.zeros(out_features, r))
        if init == "kaiming":
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        elif init == "gaussian":
            nn.init.normal_(self.lora_A, mean=0.0, std=1 / r)
        elif init == "standard_normal":
            nn.init.normal_(self.lora_A, mean=0.0, std=1.0)
        else:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        self.r, self.alpha, self.scaling = r, alpha, lora_scaling(r, alpha, rslora)
        self.enabled = True

    def delta_weight(self):
        """The update scaling * B @ A, shaped like the weight (out, in)."""
        return (self.lora_B @ self.lora_A) * self.scaling

    def extra_repr(self):
        return f"r={self.r}, alpha={self.alpha}, scaling={self.scaling:g}, enabled={self.enabled}"


class LoRAParametrization(LoRAFactors):
    """Maps a Linear weight W (out, in) to W + scaling * B @ A, for parametrize (notebook 03)."""

    def forward(self, weight):
        return weight + self.delta_weight() if self.enabled else weight


class LoRALinear(LoRAFactors):
    """An nn.Linear plus a LoRA branch: base(x) + scaling * x @ A.T @ B.T (notebook 04).

    merge() folds the update into the base weight (no extra latency); unmerge() takes it out again.
    """

    def __init__(self, base, r, alpha=1.0, init="kaiming", rslora=False):
        super().__init__(base.in_features, base.out_features, r, alpha, init, rslora)
        self.base = base
        self.merged = False

    def forward(self, x):
        if self.merged or not self.enabled:
            return self.base(x)
        return self.base(x) + (x @ self.lora_A.T @ self.lora_B.T) * self.scaling

    def extra_repr(self):
        return f"{super().extra_repr()}, merged={self.merged}"

    @torch.no_grad()
    def merge(self):
        """W <- W + scaling * B @ A; the layer then costs what a plain Linear costs."""
        if not self.merged:
            self.base.weight += self.delta_weight()
            self.merged = True

    @torch.no_grad()
    def unmerge(self):
        """W <- W - scaling * B @ A: the base weight again, up to float rounding."""
        if self.merged:
            self.base.weight -= self.delta_weight()
            self.merged = False


def base_layer(module):
    """The nn.Linear itself, or the one inside a LoRALinear wrapper (notebook 04)."""
    return module.base if isinstance(module, LoRALinear) else module
