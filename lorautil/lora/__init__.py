"""LoRA, laid out as PEFT's tuners/lora: config (settings), layer (A, B and the Linear, Conv2d and Embedding
layers), model (adding by target name, merging, disabling), save_and_load (adapter files, lorautil's and
PEFT's) (notebooks 03, 04, 10 and 11)."""

from .config import INITS, METHODS, LoraConfig, lora_scaling
from .layer import LoRAConv2d, LoRAEmbedding, LoRAFactors, LoRALinear, LoRAParametrization, LoRAWrapper, base_layer
from .many import StackedLoRALinear, finetune_many
from .model import (
    add_lora,
    disable_lora,
    expected_lora_parameters,
    has_lora,
    layer_rank,
    lora_layers,
    merge_lora,
    remove_lora,
    resolve_targets,
    trainable_summary,
)
from .optimizer import loraplus_groups, loraplus_optimizer
from .save_and_load import adapter_state, load_adapter, load_peft, peft_config, peft_state, save_adapter, save_peft

__all__ = [
    "adapter_state",
    "add_lora",
    "base_layer",
    "disable_lora",
    "expected_lora_parameters",
    "finetune_many",
    "has_lora",
    "INITS",
    "layer_rank",
    "load_adapter",
    "load_peft",
    "lora_layers",
    "lora_scaling",
    "LoraConfig",
    "LoRAConv2d",
    "LoRAEmbedding",
    "LoRAFactors",
    "LoRALinear",
    "LoRAParametrization",
    "loraplus_groups",
    "loraplus_optimizer",
    "LoRAWrapper",
    "merge_lora",
    "METHODS",
    "peft_config",
    "peft_state",
    "remove_lora",
    "resolve_targets",
    "save_adapter",
    "save_peft",
    "StackedLoRALinear",
    "trainable_summary",
]
