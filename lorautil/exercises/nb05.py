"""Checks for the exercises of notebook 05 (the rank sweep)."""
from ..lora import expected_lora_parameters, lora_layers, lora_scaling
from ..model import count_parameters
from ..training import LEARNING_RATES, evaluate
from . import exercise


def _whole_number(value):
    return not isinstance(value, bool) and int(value) == value


@exercise("05.1",
          "Up to r = 10 every layer takes the full r; above 10 linear3 stays at rank 10, above 128 linear2 stays at "
          "128 too. Only linear1 keeps growing, by 1,040 parameters per unit of r.",
          "Loop r = 1, 2, … and stop at the first r with expected_trainable(r) > 235,146, or solve "
          "1,040·r + 50,532 > 235,146 for the smallest whole r.")
def first_rank_over_full(answer, base):
    """The first rank at which LoRA on all three layers (ranks capped) trains more than full fine-tuning."""
    if not _whole_number(answer):
        return "give the rank as a whole number"
    full = count_parameters(base)
    expected = next(r for r in range(1, 10_000) if expected_lora_parameters(base, r) > full)
    if answer > expected:
        return f"at r = {answer} LoRA trains more than {full:,}, but a smaller rank already does"
    if answer < expected:
        return f"at r = {answer} LoRA trains {expected_lora_parameters(base, int(answer)):,}, not more than {full:,}"
    return True


@exercise("05.2",
          "Train the six rates again exactly as section 4 did, only with seed 1: finetune_runs(task, "
          "[(method, lr, 1) for lr in LEARNING_RATES]).",
          "Score each model with evaluate(model, TASKS[task]['val']).accuracy (the validation split, not the test "
          "set) and choose the rate of the best one.")
def second_tuning_seed(answer, base, val_set, seed0):
    """Six LoRA r = 1 models of seed 1 (one per learning rate) and the rate that scores best on validation."""
    models, choice = answer
    if len(models) != len(LEARNING_RATES):
        return f"give {len(LEARNING_RATES)} models, one per rate of LEARNING_RATES, in that order"
    for model in models:
        layers = dict(lora_layers(model))
        if sorted(layers) != ["linear1", "linear2", "linear3"] or {layer.r for layer in layers.values()} != {1}:
            return "each model should carry LoRA at r = 1 on linear1, linear2 and linear3 (METHODS['LoRA r=1'])"
        if any(abs(layer.scaling - lora_scaling(1, 2.0)) > 1e-9 for layer in layers.values()):
            return "use the settings of METHODS['LoRA r=1'] (alpha = 2r)"
        if count_parameters(model, trainable_only=True) != expected_lora_parameters(base, 1):
            return "only the adapters should train"
    accuracies = [evaluate(model, val_set).accuracy for model in models]
    if max(accuracies) < evaluate(base, val_set).accuracy + 0.2:
        return "none of the models reads rotated digits much better than the base model: were they fine-tuned?"
    seed0_val = {row["lr"]: row["val"] for row in seed0}
    if sum(accuracy == seed0_val[lr] for lr, accuracy in zip(LEARNING_RATES, accuracies, strict=True)) >= 3:
        return "these models score exactly as section 4's seed-0 runs: train them with seed 1"
    best = [lr for lr, accuracy in zip(LEARNING_RATES, accuracies, strict=True) if accuracy == max(accuracies)]
    if choice not in best:
        return f"on the validation split your seed-1 models do best at lr {best[0]:g}, not {choice}"
    return True

