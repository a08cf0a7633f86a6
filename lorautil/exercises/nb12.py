"""Checks for the exercises of notebook 12 (the LoRA family: DoRA, LoRA+, PiSSA, QLoRA)."""
import copy

from ..lora import add_lora
from ..model import count_parameters
from ..quantize import quantize_model, quantize_nf4
from ..training import evaluate
from . import close, exercise


@exercise("12.1",
          "train_bias=True makes the three layers' biases trainable next to A and B: 394 more parameters.",
          "For each seed 0, 1, 2: lorautil.trainable_copy(base, R, seed, alpha=ALPHA, method='wrapper', "
          "train_bias=True), train it as fine_tune does at chosen_lr['LoRA'], and record the trainable count and "
          "evaluate(model, rotated_val).accuracy.")
def lora_with_biases(answer, base, base_val):
    """Three seeds of LoRA r = 4 with trainable biases: DoRA's parameter count, and trained past the base."""
    rows = list(answer)
    if sorted(row["seed"] for row in rows) != [0, 1, 2]:
        return "give one row per seed 0, 1 and 2"
    frozen = count_parameters(add_lora(copy.deepcopy(base), 4, alpha=8.0, method="wrapper"), trainable_only=True)
    expected = count_parameters(add_lora(copy.deepcopy(base), 4, alpha=8.0, method="wrapper", train_bias=True),
                                trainable_only=True)
    for row in rows:
        if row["trainable"] == frozen:
            return f"seed {row['seed']}: {frozen:,} parameters train, plain LoRA's: make the biases trainable too"
        if row["trainable"] != expected:
            return f"seed {row['seed']}: {row['trainable']:,} is not the number of parameters that train"
        if not 0 <= row["val"] <= 1 or row["val"] < base_val + 0.2:
            return f"seed {row['seed']}: validation accuracy {row['val']} is not that of a fine-tuned model"
    return True


@exercise("12.2",
          "LoRA+'s learning rate is A's: keep lr = chosen_lr['LoRA+'] and change only ratio.",
          "fine_tune('LoRA+', chosen_lr['LoRA+'], seed=0, ratio=ratio) for ratio 1, 4 and 64, scored with "
          "evaluate(model, rotated_val).accuracy; ratio 16 is section 3's run, val_at('LoRA+', chosen_lr['LoRA+']).")
def loraplus_ratios(answer, runs, lr):
    """Ratios 1, 4, 16, 64 at A's chosen rate: 16 is section 3's LoRA+ run, 1 is plain LoRA at that rate."""
    if not isinstance(answer, dict) or set(answer) != {1, 4, 16, 64}:
        return "give a dict with the ratios 1, 4, 16 and 64 as keys"
    if not all(0 <= value <= 1 for value in answer.values()):
        return "give validation accuracies as fractions between 0 and 1"
    seed_0 = {row["variant"]: row["val"] for row in runs if row["lr"] == lr and row["seed"] == 0}
    if not close(answer[16], seed_0["LoRA+"], rtol=0, atol=1e-9):
        return f"ratio 16 with A at {lr:g} is section 3's LoRA+ run, which scored {seed_0['LoRA+']:.2%}"
    if "LoRA" in seed_0 and not close(answer[1], seed_0["LoRA"], rtol=0, atol=1e-9):
        return f"ratio 1 is plain LoRA at {lr:g}, which section 1 ran: {seed_0['LoRA']:.2%}"
    return True


@exercise("12.3",
          "lorautil.quantize_nf4(W1_32, block_size=...) gives .nbytes and .dequantize(); the whole matrix as one "
          "block has block_size = W1_32.numel().",
          "Per block size: (q.nbytes / W1_32.numel(), ((q.dequantize() - W1_32).norm() / W1_32.norm()).item(), "
          "evaluate(lorautil.quantize_model(copy.deepcopy(base), block_size=...), test_set).accuracy).")
def block_sizes(answer, weight, base, test_set):
    """Bytes per weight, linear1's relative error and the quantized model's test accuracy, per block size."""
    sizes = (16, 64, 256, 1024, weight.numel())
    if not isinstance(answer, dict) or set(answer) != set(sizes):
        return f"give a dict with the block sizes {sizes} as keys"
    for size in sizes:
        label = "the whole matrix" if size == weight.numel() else f"blocks of {size}"
        quantized = quantize_nf4(weight, block_size=size)
        bytes_per_weight, error, accuracy = answer[size]
        if not close(bytes_per_weight, quantized.nbytes / weight.numel()):
            return f"{label}: {bytes_per_weight:g} bytes per weight; count the 4-bit indices and the float32 absmax"
        expected_error = ((quantized.dequantize() - weight).norm() / weight.norm()).item()
        if not close(error, expected_error, rtol=1e-4):
            return f"{label}: {error:g} is not ||W - Q(W)|| / ||W|| (a fraction, not a percentage)"
        if size in (64, weight.numel()):  # two evaluations keep the check fast
            expected_accuracy = evaluate(quantize_model(copy.deepcopy(base), block_size=size), test_set).accuracy
            if not close(accuracy, expected_accuracy, rtol=0, atol=1e-9):
                return f"{label}: {accuracy:g} is not the upright test accuracy of the base quantized that way"
    return True
