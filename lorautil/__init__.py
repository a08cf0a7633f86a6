"""lorautil: the shared code of the LoRA course. Each function's docstring names its notebook."""
from .files import atomic_path
from .data import (DATA_DIR, MNIST_MEAN, MNIST_STD, Batches, MNISTTensors, MNISTUnavailableError,
                   batches, copy_from_mirror, load_mnist, mnist_dataset, normalize)
from .lora import (LoraConfig, LoRALinear, LoRAParametrization, adapter_state, add_lora, disable_lora,
                   has_lora, load_adapter, lora_layers, lora_scaling, merge_lora, remove_lora, save_adapter,
                   trainable_summary)
from .models import DigitsNet, base_model_path, count_parameters, load_base_model, pretrain, save_state
from .plots import (moving_average, plot_confusion, plot_losses, plot_per_digit, show_digits,
                    show_misclassified, to_pixels)
from .training import (FINETUNE_DIGITS, EvalResult, default_device, evaluate, finetune, model_device,
                       predict, train)
