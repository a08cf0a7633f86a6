"""Checks for the exercises of notebook 04 (LoRA as a wrapper layer)."""
import copy

import torch

from ..lora import add_lora
from ..model import count_parameters
from . import exercise, nb03


@exercise("04.1",
          "Each wrapped layer adds r·(in + out) parameters: A is r × in and B is out × r.",
          "At r = 8 add 8·(in + out) for linear1, linear2 and linear3; with train_bias=True add their "
          "256 + 128 + 10 bias entries. lorautil.count_parameters(model, trainable_only=True) counts for you.")
def trainable_counts(answer, base):
    if set(answer) != {False, True}:
        return "give a dict with the keys False and True (train_bias)"
    for train_bias in (False, True):
        with torch.random.fork_rng(devices=[]):  # add_lora draws A: leave the notebook's random state alone
            model = add_lora(copy.deepcopy(base), 8, method="wrapper", train_bias=train_bias)
        expected = count_parameters(model, trainable_only=True)
        if answer[train_bias] != expected:
            return f"train_bias={train_bias}: {answer[train_bias]:,} is not the number that trains"
    return True


@exercise("04.3",
          "Pass target_modules=['linear3'] to lorautil.finetune, with r=R, alpha=ALPHA, seed=0, method='wrapper'.",
          "Leave train_bias at its default (False) and use init='standard_normal', as run (b) above; the result "
          "must have LoRA on linear3 only and R·(128 + 10) = 276 trainable parameters.")
def linear3_only(answer, base, test_set):
    """Exercise 03.3's check, for the wrapper: LoRA on linear3 alone, 276 trainable, the fine-tuned digits learnt."""
    return nb03.linear3_only(answer, base, test_set)
