"""lorautil: the shared code of the LoRA course. Each function's docstring names the notebook that introduces it.

Importing it changes no global state (threads, seeds, devices): notebooks and tools choose those.
"""
from .analysis import (
                       amplification,
                       delta_weights,
                       projection_norm,
                       random_orthonormal,
                       singular_directions,
                       subspace_similarity,
                       subspace_similarity_grid,
                       tensor_bytes,
                       with_weights,
)
from .data import (
                       DATA_DIR,
                       FINETUNE_DIGITS,
                       MNIST_MEAN,
                       MNIST_STD,
                       OTHER_DIGITS,
                       Batches,
                       MNISTTensors,
                       MNISTUnavailableError,
                       batches,
                       copy_from_mirror,
                       load_mnist,
                       mnist_dataset,
                       normalize,
)
from .files import atomic_path
from .linalg import approximation_errors, energy_fraction, energy_rank, lora_parameter_count, truncated_svd
from .lora import (
                       LoraConfig,
                       LoRAFactors,
                       LoRALinear,
                       LoRAParametrization,
                       adapter_state,
                       add_lora,
                       base_layer,
                       disable_lora,
                       has_lora,
                       load_adapter,
                       lora_layers,
                       lora_scaling,
                       merge_lora,
                       remove_lora,
                       save_adapter,
                       trainable_summary,
)
from .model import LINEAR_LAYERS, DigitsNet, base_model_path, count_parameters, load_base_model, pretrain, save_state
from .numerics import IDENTITY_RTOL, assert_identity, float64_copy, max_difference
from .plots import (
                       moving_average,
                       plot_confusion,
                       plot_losses,
                       plot_per_digit,
                       show_digits,
                       show_misclassified,
                       to_pixels,
)
from .results import group_by, mean_std, select
from .training import (
                       EvalResult,
                       default_device,
                       evaluate,
                       finetune,
                       model_device,
                       model_dtype,
                       predict,
                       train,
                       trainable_copy,
)

__all__ = ["adapter_state", "add_lora", "amplification", "approximation_errors", "assert_identity", "atomic_path",
           "base_layer", "base_model_path", "batches", "Batches", "copy_from_mirror", "count_parameters", "DATA_DIR",
           "default_device", "delta_weights", "DigitsNet", "disable_lora", "energy_fraction", "energy_rank",
           "EvalResult", "evaluate", "finetune", "FINETUNE_DIGITS", "float64_copy", "group_by", "has_lora",
           "IDENTITY_RTOL", "LINEAR_LAYERS", "load_adapter", "load_base_model", "load_mnist", "lora_layers",
           "lora_parameter_count", "lora_scaling", "LoraConfig", "LoRAFactors", "LoRALinear", "LoRAParametrization",
           "max_difference", "mean_std", "merge_lora", "mnist_dataset", "MNIST_MEAN", "MNIST_STD", "MNISTTensors",
           "MNISTUnavailableError", "model_device", "model_dtype", "moving_average", "normalize", "OTHER_DIGITS",
           "plot_confusion", "plot_losses", "plot_per_digit", "predict", "pretrain", "projection_norm",
           "random_orthonormal", "remove_lora", "save_adapter", "save_state", "select", "show_digits",
           "show_misclassified", "singular_directions", "subspace_similarity", "subspace_similarity_grid",
           "tensor_bytes", "to_pixels", "train", "trainable_copy", "trainable_summary", "truncated_svd",
           "with_weights"]
