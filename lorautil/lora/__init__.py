"""LoRA, laid out as PEFT's tuners/lora: config (settings), layer (A, B and the layers), model
(adding, merging, disabling by target name), save_and_load (adapter files) (notebooks 03 and 04)."""

from .config import INITS, METHODS, LoraConfig, lora_scaling
from .layer import LoRAFactors, LoRALinear, LoRAParametrization, base_layer
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
from .save_and_load import adapter_state, load_adapter, save_adapter

__all__ = [
    "adapter_state",
    "add_lora",
    "base_layer",
    "disable_lora",
    "expected_lora_parameters",
    "has_lora",
    "INITS",
    "layer_rank",
    "load_adapter",
    "lora_layers",
    "lora_scaling",
    "LoraConfig",
    "LoRAFactors",
    "LoRALinear",
    "LoRAParametrization",
    "merge_lora",
    "METHODS",
    "remove_lora",
    "resolve_targets",
    "save_adapter",
    "trainable_summary",
]
