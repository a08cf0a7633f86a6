"""Checks for the exercises of notebook 06 (scaling and placement)."""
import torch

from ..data import MNISTTensors, rotate_digits
from ..lora import expected_lora_parameters, lora_layers, lora_scaling
from ..results import select
from ..training import evaluate
from . import close, exercise

BUDGET = 6_250


@exercise("06.1",
          "Each placement trains (d + k)·r per adapted layer: about 6,250 divided by the cost of one unit of rank.",
          "For each placement try r = 1 … 64 with expected_trainable(r, targets) and keep the r whose count is "
          "closest to 6,250.")
def ranks_for_budget(answer, base, placements):
    """{placement: rank} whose parameter count comes closest to 6,250, for every placement of PLACEMENTS."""
    if set(answer) != set(placements):
        return f"give a dict with one rank for each of {', '.join(placements)}"
    for name, (targets, _) in placements.items():
        closest = min(abs(expected_lora_parameters(base, r, targets) - BUDGET) for r in range(1, 257))
        count = expected_lora_parameters(base, int(answer[name]), targets)
        if abs(count - BUDGET) != closest:
            return f"{name}: r = {answer[name]} trains {count:,}; another rank comes closer to {BUDGET:,}"
    return True


@exercise("06.3",
          "Keep everything of lora_options('alpha/r', 8) except alpha, which becomes 2 · 10/3, and train at lr 0.003 "
          "with seed 0.",
          "Score the new model on rotated_val and compare its distance to the seed-0 runs at lr 0.01 and at lr 0.003 "
          "(select(rows, rule='alpha/r', r=8, lr=..., seed=0)).")
def alpha_or_learning_rate(answer, base, rows, val_set):
    """The r = 8 model with alpha 20/3, and True if it lands closer to the run with the same scaling × lr."""
    model, closer_to_product = answer
    layers = dict(lora_layers(model))
    if sorted(layers) != ["linear1", "linear2", "linear3"] or {layer.r for layer in layers.values()} != {8}:
        return "the model should carry LoRA at r = 8 on all three layers"
    if any(not close(layer.scaling, lora_scaling(8, 2 * 10 / 3)) for layer in layers.values()):
        return "its scaling is not (20/3)/8: raise alpha from 2 to 2 · 10/3 and keep the rule alpha/r"
    accuracy = evaluate(model, val_set).accuracy
    if accuracy < evaluate(base, val_set).accuracy + 0.2:
        return "the model barely reads rotated digits: was it fine-tuned on rotated_fit?"
    grid = {lr: select(rows, rule="alpha/r", r=8, lr=lr, seed=0)[0]["val"] for lr in (1e-2, 3e-3)}
    expected = abs(accuracy - grid[1e-2]) < abs(accuracy - grid[3e-3])
    if not isinstance(closer_to_product, bool) or closer_to_product != expected:
        return (f"your model scores {accuracy:.1%} on validation; the run with the same product (lr 0.01) "
                f"{grid[1e-2]:.1%}, the one with the same lr (0.003) {grid[3e-3]:.1%}: closer_to_product says "
                f"whether it is nearer the first (True) or the second (False)")
    return True


def exact_update(base):
    """ΔW₁ = W₁Pᵀ − W₁ for the quarter turn P of lorautil.rotate_digits, in float64."""
    side = 28
    pixels = MNISTTensors(torch.arange(side * side, dtype=torch.float64)[None], torch.zeros(1, dtype=torch.long))
    turn = rotate_digits(pixels).images[0].long()   # rotated image[p] = image[turn[p]]: (W₁Pᵀ)[:, p] = W₁[:, turn[p]]
    W1 = base.linear1.weight.detach().double().cpu()
    return W1[:, turn] - W1


@exercise("06.4",
          "Build P from torch.rot90 applied to torch.arange(784).view(28, 28), as rotate_digits turns the images; "
          "then ΔW₁ = W₁ @ P.T − W₁.",
          "torch.linalg.matrix_rank(ΔW₁) gives the rank; with σ = torch.linalg.svdvals(ΔW₁), the share of the "
          "best rank k is (σ[:k] ** 2).sum() / (σ ** 2).sum().")
def exact_fix(answer, base):
    """The rank of the exact update of linear1 and the energy shares of its best rank-3 and rank-64 parts."""
    rank, energy = answer
    update = exact_update(base)
    expected_rank = torch.linalg.matrix_rank(update).item()
    if rank != expected_rank:
        return f"the rank is not {rank}: count the singular values above rounding (torch.linalg.matrix_rank)"
    if set(energy) != {3, 64}:
        return "give the energy shares as a dict {3: ..., 64: ...}"
    sigma2 = torch.linalg.svdvals(update).square()
    for k in (3, 64):
        expected = (sigma2[:k].sum() / sigma2.sum()).item()
        if close(energy[k], 100 * expected, rtol=0.0, atol=0.1):
            return "give the shares as fractions between 0 and 1, not in percent"
        if not close(energy[k], expected, rtol=0.0, atol=1e-3):
            return f"the best rank-{k} part does not hold {float(energy[k]):.3f} of Σσ²: square the singular values"
    return True
