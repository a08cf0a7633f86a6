"""Checks for the exercises of notebook 10 (LoRA on convolutions and embeddings)."""
import torch

from ..linalg import lora_parameter_count
from ..lora import LoRAConv2d, LoRALinear
from . import close, exercise


@exercise("10.1",
          "A Conv2d weight (out, in, kh, kw) is an out × (in·kh·kw) matrix; LoRA on a d × k matrix trains (d + k)·r.",
          "Here d = 128 and k = 64·3·3 = 576: (128 + 576)·8 LoRA parameters, against 128·576 weights (biases "
          "not counted); the fraction is the first divided by the second.")
def conv_lora_count(answer):
    """LoRA parameters at r = 8 on a 3×3 Conv2d(64, 128), and their fraction of its 73,728 weights."""
    lora, fraction = answer
    d, k = 128, 64 * 3 * 3
    expected = lora_parameter_count(d, k, 8)
    if lora != expected:
        return f"{lora:,} is not what A (8, 64, 3, 3) and B (128, 8, 1, 1) hold together"
    if not close(fraction, expected / (d * k), rtol=1e-3):
        return "fraction is not the LoRA parameters divided by the convolution's weights, unrounded (not in %)"
    return True


@exercise("10.2",
          "Build both in float64 (.double()), copy the convolution's weight, viewed as 32 × 16, and its bias into the "
          "Linear layer, and add_lora(..., method='wrapper') to each; give B non-zero values.",
          "Copy the factors across with .view: linear_lora.lora_A from conv_lora.lora_A.view(4, 16), "
          "linear_lora.lora_B from conv_lora.lora_B.view(32, 4); then conv_lora(x) equals "
          "linear_lora(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).")
def pointwise_is_linear(answer):
    """The adapted Conv2d(16, 32, 1) and the adapted Linear(16, 32), float64, with the same non-zero update."""
    conv_lora, linear_lora = answer
    if not isinstance(conv_lora, LoRAConv2d) or conv_lora.base.kernel_size != (1, 1) or \
            (conv_lora.base.in_channels, conv_lora.base.out_channels) != (16, 32):
        return "conv_lora should be the LoRA-wrapped nn.Conv2d(16, 32, 1) (add_lora(..., method='wrapper'), then [0])"
    if not isinstance(linear_lora, LoRALinear) or \
            (linear_lora.base.in_features, linear_lora.base.out_features) != (16, 32):
        return "linear_lora should be the LoRA-wrapped nn.Linear(16, 32) (add_lora(..., method='wrapper'), then [0])"
    if conv_lora.base.weight.dtype != torch.float64 or linear_lora.base.weight.dtype != torch.float64:
        return "build both layers in float64 (.double()), so that only float64 rounding is left"
    if torch.count_nonzero(conv_lora.lora_B) == 0:
        return "B is still zero, so both adapters add nothing: give B non-zero values"
    x = torch.randn(2, 16, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        per_pixel = linear_lora(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        if not torch.allclose(conv_lora(x), per_pixel, rtol=1e-10, atol=1e-10):
            return "the adapted convolution and the adapted Linear layer on every pixel give different outputs"
    return True


@exercise("10.3",
          "The settings that chose an end of the grid are those whose chosen rate (runs(results, name)[0]['lr']) is "
          "max(LRS) or min(LRS); one step further out is 0.1 past the top and 0.001 past the bottom.",
          "For each such setting train once more with train_rotated(base, options, lr, SEEDS[0]) at that rate and "
          "store beyond[name] = (lr, accuracy(model, val_part)).")
def beyond_the_grid(answer, results, tuning, learning_rates, val_part):
    """{setting: (rate one step past the chosen end of the grid, turned validation accuracy there)}."""
    chosen = {row["setting"]: row["lr"] for row in results}
    further = {name: 0.1 if lr == max(learning_rates) else 0.001 for name, lr in chosen.items()
               if lr in (min(learning_rates), max(learning_rates))}
    if set(answer) != set(further):
        return f"give one entry for each setting that chose an end of the grid: {', '.join(further)}"
    for name, (lr, value) in answer.items():
        if not close(lr, further[name]):
            return f"{name} chose {chosen[name]:g}: one step further out is {further[name]:g}, not {lr:g}"
        images = value * len(val_part)
        if not 0 <= value <= 1 or abs(images - round(images)) > 1e-3:
            return f"{name}: {value} is not an accuracy on the {len(val_part):,} images of val_part (a fraction)"
        at_chosen = [row["val"] for row in tuning if row["setting"] == name and row["lr"] == chosen[name]]
        if value in at_chosen:
            return f"{name}: that is the accuracy at the chosen rate {chosen[name]:g}, not at {further[name]:g}"
    return True
