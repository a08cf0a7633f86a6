"""Checks for the exercises of notebook 01 (matrix rank)."""
import copy

import torch

from ..linalg import lora_parameter_count, truncated_svd
from ..training import evaluate
from . import exercise

TRUNCATION_RANKS = (1, 2, 4, 8, 16, 32, 64, 256)  # the k's of exercise 2


@exercise("01.1",
          "The factors of a d×k weight hold (d + k)·r numbers, the weight d·k: find the last r where the first is "
          "still smaller.",
          "(d + k)·r < d·k exactly when r < d·k / (d + k): the integer just below that, for each (d, k) in "
          "layer_shapes (linear3: 10·128 / 138 = 9.28, so r = 9).")
def break_even_ranks(answer, layer_shapes):
    """{layer: the largest r at which LoRA's factors hold fewer numbers than the weight}."""
    if set(answer) != set(layer_shapes):
        return f"give a dict with one entry per layer: {', '.join(layer_shapes)}"
    for name, (d, k) in layer_shapes.items():
        expected = max(r for r in range(1, min(d, k) + 1) if lora_parameter_count(d, k, r) < d * k)
        if answer[name] != expected:
            return f"{name} ({d}×{k}): {answer[name]} is not the largest r with (d + k)·r < d·k"
    return True


@exercise("01.2",
          "For each k, copy the base model and overwrite linear1.weight with truncated_svd(weight, k) (inside "
          "torch.no_grad()), then lorautil.evaluate the copy on test_set.",
          "Keep the k's whose accuracy is at least the base model's minus 0.01 and take the smallest; k = 256 is "
          "the full weight, so at least that one qualifies.")
def smallest_good_truncation(answer, base_model, test_set):
    """The smallest k of TRUNCATION_RANKS whose rank-k linear1 keeps accuracy within one point of the base model."""
    threshold = evaluate(base_model, test_set).accuracy - 0.01
    for k in TRUNCATION_RANKS:
        truncated = copy.deepcopy(base_model)
        with torch.no_grad():
            truncated.linear1.weight.copy_(truncated_svd(truncated.linear1.weight, k))
        if evaluate(truncated, test_set).accuracy >= threshold:
            break
    if answer != k:
        return f"{answer} is not the smallest k of {TRUNCATION_RANKS} within one point of the base model"
    return True


@exercise("01.3",
          "Build the (784, 256) product B1 @ A1 of a (784, 1) and a (1, 256) random factor, then take "
          "torch.linalg.matrix_rank of its .T and of its .view(256, 784).",
          "rank_transposed = matrix_rank(product.T), rank_viewed = matrix_rank(product.view(256, 784)): the "
          "first stays 1, the second is neither 1 nor 256.")
def viewed_rank_one(answer):
    """(rank of the transposed update, rank of the .view-ed one) for a random rank-1 (784, 256) product."""
    rank_transposed, rank_viewed = answer
    generator = torch.Generator().manual_seed(0)  # its own generator: the notebook's random state is untouched
    product = torch.randn(784, 1, generator=generator) @ torch.randn(1, 256, generator=generator)
    if rank_transposed != torch.linalg.matrix_rank(product.T).item():
        return f"rank_transposed = {rank_transposed}: a transposed rank-1 matrix keeps rank 1"
    if rank_viewed != torch.linalg.matrix_rank(product.view(256, 784)).item():
        return f"rank_viewed = {rank_viewed} is not the rank of the .view(256, 784) of B1 @ A1"
    return True


@exercise("01.4",
          "rank(XY) <= min(rank X, rank Y): look at the shapes of W2, and of an 8-output W2.",
          "rank_W2W1 = torch.linalg.matrix_rank(W2f @ W1f). With an 8-unit middle layer every path passes "
          "8 numbers, so W3·W2·W1 has rank at most 8, and random weights reach that bound.")
def rank_of_products(answer, W1f, W2f):
    """(rank of W2·W1, rank of W3·W2·W1 through an 8-unit middle layer)."""
    rank_W2W1, rank_narrow = answer
    expected = torch.linalg.matrix_rank(W2f @ W1f).item()
    if rank_W2W1 != expected:
        return f"rank_W2W1 = {rank_W2W1} is not the rank of W2f @ W1f"
    if rank_narrow != 8:  # min(10, 8, 256, ...) for generic (random) weights: exactly the bottleneck
        return f"rank_narrow = {rank_narrow}: every path goes through the 8 middle units"
    return True
