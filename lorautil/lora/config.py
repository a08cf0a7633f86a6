"""What add_lora is asked for, checked once: r, alpha, method, init and the scaling they give (notebook 03)."""
import math
from dataclasses import dataclass, field

METHODS = ("parametrization", "wrapper")
# PEFT's names and meanings: "kaiming" is its default (kaiming-uniform A), "gaussian" its N(0, 1/r);
# "standard_normal" is the source documents' N(0, 1), used where the course reproduces them; "pissa" is
# PEFT's init_lora_weights="pissa" (Meng et al. 2024): A and B from W's top-r SVD, W replaced by the rest.
INITS = ("kaiming", "gaussian", "standard_normal", "pissa")


def lora_scaling(r, alpha, rslora=False):
    """alpha / r, or alpha / sqrt(r) for rsLoRA (notebook 05)."""
    return alpha / math.sqrt(r) if rslora else alpha / r


@dataclass
class LoraConfig:
    """The settings of a model's adapters, saved beside their tensors (notebook 03)."""

    r: int
    alpha: float = 1.0
    method: str = "parametrization"
    target_modules: list = field(default_factory=list)
    train_bias: bool = False
    init: str = "kaiming"
    rslora: bool = False
    cap_rank: bool = False
    rank_pattern: dict = field(default_factory=dict)
    use_dora: bool = False  # DoRA (Liu et al. 2024): a trained magnitude per output row (notebook 12)

    def __post_init__(self):
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r < 1:
            raise ValueError(f"r must be a whole number >= 1, got {self.r!r}")
        if not self.alpha > 0:
            raise ValueError(f"alpha must be > 0, got {self.alpha!r}")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")
        if not isinstance(self.use_dora, bool):
            raise ValueError(f"use_dora must be True or False, got {self.use_dora!r}")
        self.alpha = float(self.alpha)
        for name, rank in self.rank_pattern.items():
            if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
                raise ValueError(f"rank_pattern[{name!r}] must be a whole number >= 1, got {rank!r}")
