"""Checks for the exercises of notebook 03 (LoRA as a weight parametrization)."""
import copy

import torch

from ..data import FINETUNE_DIGITS
from ..lora import add_lora, lora_layers
from ..model import LINEAR_LAYERS, count_parameters
from ..training import evaluate
from . import exercise


@exercise("03.1",
          "Each adapted layer adds (in + out)·r trainable numbers: A is r × in and B is out × r.",
          "Sum (in + out)·r over linear1, linear2 and linear3, or count with "
          "lorautil.count_parameters(model, trainable_only=True) on each fine-tuned model; the biases stay frozen.")
def trainable_by_rank(answer, base):
    """{r: trainable parameters} for r = 1, 2 and 8 on all three layers, biases frozen."""
    if set(answer) != {1, 2, 8}:
        return "give a dict with the keys 1, 2 and 8 (the ranks)"
    for r in (1, 2, 8):
        with torch.random.fork_rng(devices=[]):  # add_lora draws A: leave the notebook's random state alone
            expected = count_parameters(add_lora(copy.deepcopy(base), r), trainable_only=True)
        if answer[r] != expected:
            return f"r = {r}: {answer[r]:,} is not the number that trains"
    return True


@exercise("03.3",
          "Pass target_modules=['linear3'] to lorautil.finetune, with r=2, alpha=1, seed=0 and "
          "init='standard_normal'.",
          "The result must have LoRA on linear3 only, (128 + 10)·2 = 276 trainable parameters (biases frozen), "
          "and do better than the base model on the digits 2, 3, 5, 8 and 9.")
def linear3_only(answer, base, test):
    """A fine-tuned model with LoRA on linear3 alone that learnt the fine-tuned digits."""
    adapted = [name for name, _ in lora_layers(answer)]
    if adapted != ["linear3"]:
        return f"LoRA sits on {adapted or 'no layer'}, not on linear3 alone"
    if count_parameters(answer, trainable_only=True) != 2 * (128 + 10):
        return f"{count_parameters(answer, trainable_only=True):,} parameters train, not 276 (r = 2, biases frozen)"
    if evaluate(answer, test).accuracy_on(FINETUNE_DIGITS) <= evaluate(base, test).accuracy_on(FINETUNE_DIGITS):
        return "the model is no better than the base model on the fine-tuned digits: train it"
    return True


@exercise("03.5",
          "Clone each layer's lora_A and lora_B before the step and compare with torch.equal after it.",
          "With B = 0, the gradient of A (scaling · Bᵀ G) is exactly zero, and Adam does not move a parameter "
          "whose gradient is zero; B's gradient (scaling · G Aᵀ) is not zero.")
def who_moves_first(answer):
    """{layer: (A changed, B changed)} after one step from B = 0: (False, True) in every layer, exactly."""
    if set(answer) != set(LINEAR_LAYERS):
        return f"give a dict with one entry per layer: {', '.join(LINEAR_LAYERS)}"
    for name in LINEAR_LAYERS:
        a_changed, b_changed = answer[name]
        if (bool(a_changed), bool(b_changed)) != (False, True):
            return f"{name}: A changed {bool(a_changed)}, B changed {bool(b_changed)} is not what one step does"
    return True
