"""Checks for the exercises of notebook 02 (the base model)."""
import math

import torch
from torch import nn

from ..data import batches
from ..model import DigitsNet
from ..training import evaluate
from . import exercise


@exercise("02.3",
          "The conventional network is DigitsNet(relu_between=True), pre-trained with the documents' recipe.",
          "lorautil.load_base_model(relu_between=True, device=cpu) gives it (and trains and saves it first if its "
          "file is missing); lorautil.pretrain(relu_between=True) trains it from scratch.")
def conventional_network(answer, model, test_set):
    """A pre-trained DigitsNet with a ReLU between its layers: clearly more accurate than the documents' one."""
    if not isinstance(answer, DigitsNet) or not answer.relu_between:
        return "give the DigitsNet built with relu_between=True"
    accuracy, documents = evaluate(answer, test_set).accuracy, evaluate(model, test_set).accuracy
    if accuracy <= documents + 0.05:
        return (f"its test accuracy {accuracy:.2%} is not well above the documents' network's {documents:.2%}: "
                "train it for a whole epoch")
    return True


@exercise("02.4",
          "Same recipe as section 1 (torch.manual_seed(0), then DigitsNet(), then one epoch), only with "
          "lorautil.batches(train_set, 64, shuffle=True).",
          "big_losses = lorautil.train(big_batch_model, lorautil.batches(train_set, 64, shuffle=True), "
          "progress=False) returns one loss per step: ceil(60,000 / 64) = 938 of them.")
def batch_64_losses(answer, train_set):
    """The per-step losses of one seed-0 epoch at batch 64: 938 steps, the first on the recipe's first batch."""
    expected_steps = math.ceil(len(train_set) / 64)
    if len(answer) != expected_steps:
        return f"{len(answer):,} losses: an epoch of batches of 64 has {expected_steps:,} steps"
    with torch.random.fork_rng(devices=[]):  # recompute step 1 without touching the notebook's random state
        torch.manual_seed(0)
        model = DigitsNet()
        images, labels = next(iter(batches(train_set, 64, shuffle=True)))
        with torch.no_grad():
            first = nn.CrossEntropyLoss()(model(images), labels).item()
    if not math.isclose(float(answer[0]), first, rel_tol=1e-5):
        return (f"the first loss is {float(answer[0]):.6f}, not {first:.6f}: seed 0 first, then the model, then "
                "the batches of 64")
    return True


@exercise("02.5",
          "Build the model once before and once after drawing the epoch's order (lorautil.batches(...).order()), "
          "each time right after torch.manual_seed(0), and compare with torch.equal.",
          "Compare the two models' linear1.weight and the two orders. Both draw from the one global generator, so "
          "swapping them moves each to another place in the stream.")
def what_the_order_changes(answer, train_set):
    """(same first weights?, same batch order?) when the model is built after the epoch's draws."""
    same_weights, same_order = answer
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        first_weights, first_order = DigitsNet().linear1.weight, batches(train_set, 10, shuffle=True).order()
        torch.manual_seed(0)
        swapped_order = batches(train_set, 10, shuffle=True).order()
        swapped_weights = DigitsNet().linear1.weight
    expected = {"same_weights": torch.equal(first_weights, swapped_weights),
                "same_order": torch.equal(first_order, swapped_order)}
    given = {"same_weights": same_weights, "same_order": same_order}
    wrong = [name for name in expected if bool(given[name]) != expected[name]]
    if wrong:
        return f"{' and '.join(wrong)} {'is' if len(wrong) == 1 else 'are'} not right"
    return True
