"""lorautil: the shared code of the LoRA course. Each function's docstring names its notebook."""
import os as _os

import torch as _torch

# DigitsNet's batches of 10 are too small to gain from several threads, and threads that share a
# busy core wait on each other: on the 2-core test machine a 600-step fine-tune took 1.1 s on one
# thread and 203 s on two while another process ran. Set OMP_NUM_THREADS to choose otherwise.
if "OMP_NUM_THREADS" not in _os.environ:
    _torch.set_num_threads(1)
from .analysis import (amplification, delta_weights, projection_norm, random_orthonormal, singular_directions,
                       subspace_similarity, subspace_similarity_grid, tensor_bytes, with_weights)
from .files import atomic_path
from .data import (DATA_DIR, MNIST_MEAN, MNIST_STD, Batches, MNISTTensors, MNISTUnavailableError,
                   batches, copy_from_mirror, load_mnist, mnist_dataset, normalize)
from .linalg import approximation_errors, energy_fraction, energy_rank, lora_parameter_count, truncated_svd
from .lora import (LoraConfig, LoRALinear, LoRAParametrization, adapter_state, add_lora, disable_lora,
                   has_lora, load_adapter, lora_layers, lora_scaling, merge_lora, remove_lora, save_adapter,
                   trainable_summary)
from .numerics import IDENTITY_RTOL, assert_identity, float64_copy, max_difference
from .models import DigitsNet, base_model_path, count_parameters, load_base_model, pretrain, save_state
from .plots import (moving_average, plot_confusion, plot_losses, plot_per_digit, show_digits,
                    show_misclassified, to_pixels)
from .training import (FINETUNE_DIGITS, EvalResult, default_device, evaluate, finetune, model_device, model_dtype,
                       predict, train)
