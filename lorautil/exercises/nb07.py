"""Checks for the exercises of notebook 07 (forgetting)."""
import copy

import torch

from ..analysis import delta_weights
from ..lora import disable_lora, lora_layers
from ..training import evaluate, model_device
from . import close, exercise


def outputs(model, test_set):
    """The model's ten outputs for every test image."""
    with torch.no_grad():
        return model(test_set.images.to(model_device(model)))


@exercise("07.3",
          "evaluate(model, test_set).predictions gives a model's answers; torch.bincount(answers, minlength=10) counts "
          "them per digit. An image answered by a tie has all ten outputs 0: its largest output is 0.",
          "counts = {'truth': bincount of test_set.labels, 'base': of base's predictions, 'full': of "
          "final_models['full']'s}; all_zero = {'base': ..., 'full': ...}, each "
          "(model(test_images).max(dim=1).values == 0).sum().item().")
def answers_per_digit(answer, base, full_model, test_set):
    """The answers per digit of the truth, the base model and the full fine-tune, and the all-zero (tie) images."""
    counts, all_zero = answer
    models = {"base": base, "full": full_model}
    expected = {"truth": torch.bincount(test_set.labels, minlength=10),
                **{name: torch.bincount(evaluate(model, test_set).predictions, minlength=10)
                   for name, model in models.items()}}
    if set(counts) != set(expected):
        return "give counts as a dict with the keys 'truth', 'base' and 'full'"
    for name, count in expected.items():
        if torch.as_tensor(counts[name]).cpu().tolist() != count.tolist():
            return f"counts['{name}'] is not the number of answers per digit 0 to 9 (ten counts)"
    if set(all_zero) != set(models):
        return "give all_zero as a dict with the keys 'base' and 'full'"
    for name, model in models.items():
        zeros = (outputs(model, test_set).max(dim=1).values == 0).sum().item()
        if all_zero[name] != zeros:
            return f"all_zero['{name}'] = {all_zero[name]} is not the number of test images whose ten outputs are all 0"
    return True


@exercise("07.4",
          "Copy the model, call merge() and then unmerge() on each of its LoRA layers (lorautil.lora_layers), and "
          "compare every layer's base.weight, entry by entry (!=), with a clone taken before.",
          "changed = sum of (lora.base.weight != before[name]).sum().item() over the layers; then, inside "
          "lorautil.disable_lora(model), difference = (model(test_images) - base_outputs).abs().max().item().")
def merge_then_unmerge(answer, adapted, base, test_set):
    """How many adapted weights merge + unmerge leaves changed, and the largest output difference that leaves."""
    changed, difference = answer
    model = copy.deepcopy(adapted)
    layers = lora_layers(model)
    before = {name: lora.base.weight.clone() for name, lora in layers}
    for _, lora in layers:
        lora.merge()
        lora.unmerge()
    expected = sum((lora.base.weight != before[name]).sum().item() for name, lora in layers)
    if changed != expected:
        total = sum(weight.numel() for weight in before.values())
        return (f"{changed:,} weights changed is not the count: compare all {total:,} adapted weights before "
                "merge() and after unmerge(), entry by entry")
    with disable_lora(model):
        largest = (outputs(model, test_set) - outputs(base, test_set)).abs().max().item()
    if not close(difference, largest, rtol=1e-3):
        return ("difference is not the largest |output - base output| over the test images, with the adapter "
                "disabled after merge() and unmerge()")
    return True


@exercise("07.5",
          "lorautil.delta_weights(relu_base, model) gives each layer's ΔW; its Frobenius norm is "
          "torch.linalg.matrix_norm(ΔW) (the default).",
          "For each method m of DOMAIN_METHODS, take the seed-0 model at its chosen rate, "
          "domain_runs[m, domain_lr[m], 0][0], and set moved[m] = {layer name: norm of its ΔW} for linear1 to linear3.")
def update_norms(answer, relu_base, domain_runs, domain_lr):
    """{method: {layer: ‖ΔW‖_F}} of the rotated-digit fine-tunes, seed 0, each at its chosen rate."""
    if set(answer) != set(domain_lr):
        return f"give a dict with one entry per method: {', '.join(domain_lr)}"
    for method, lr in domain_lr.items():
        for name, delta in delta_weights(relu_base, domain_runs[method, lr, 0][0]).items():
            if name not in answer[method]:
                return f"moved['{method}'] has no entry for {name}"
            expected = torch.linalg.matrix_norm(delta.double()).item()
            if not close(answer[method][name], expected, rtol=1e-4, atol=1e-6):
                return f"moved['{method}']['{name}'] is not the Frobenius norm of that layer's ΔW"
    return True
