"""Benchmarks, measured side by side in one process: `python tools/bench.py` (or `make bench`).

1. One epoch of the documents' recipe with torchvision's DataLoader and with in-memory batches:
   the two models must be equal bit for bit; prints both times and the ratio.
2. Training-step time and optimizer-state memory of full fine-tuning versus LoRA at several ranks, with
   torch.optim.Adam and with train()'s FlatAdam (checked to give the same weights bit for bit).
3. Many adapters at once: 16 LoRA fine-tunes one at a time (finetune) versus stacked (finetune_many),
   in adapter-steps per second at 1 and 2 threads, with the floor (forward and backward of the stack
   alone) and a check that the two give the same test accuracies.
"""
import argparse
import time

import torch
import torch.nn.functional as F

import lorautil
from lorautil import (
    FINETUNE_DIGITS,
    batches,
    count_parameters,
    evaluate,
    finetune,
    finetune_many,
    load_mnist,
    train,
    trainable_copy,
)
from lorautil.lora import many
from lorautil.reference import document_accuracy, document_loaders, document_training


def timed(function, *args, **kwargs):
    """(result, seconds) of one call."""
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def compare_data_paths():
    """Part 1: one epoch through the DataLoader and from memory; returns the trained model."""
    train_loader, test_loader = document_loaders()
    train_set, test_set = load_mnist(True), load_mnist(False)

    def memory_epoch():
        torch.manual_seed(0)
        model = lorautil.DigitsNet()
        # torch.optim.Adam as in the documents' loop, so that only the data path differs (train's FlatAdam is part 2).
        train(model, batches(train_set, 10, shuffle=True), progress=False,
              optimizer=torch.optim.Adam(model.parameters(), lr=1e-3))
        return model

    slow, slow_seconds = timed(document_training, train_loader)
    fast, fast_seconds = timed(memory_epoch)
    same = all(torch.equal(v, fast.state_dict()[k]) for k, v in slow.state_dict().items())
    slow_accuracy, slow_eval = timed(document_accuracy, slow, test_loader)
    fast_result, fast_eval = timed(evaluate, fast, test_set)
    print("1. One epoch of the documents' recipe (6,000 steps of batch 10), CPU")
    print(f"   DataLoader loop    {slow_seconds:7.2f} s   test evaluation {slow_eval:6.3f} s")
    print(f"   in-memory batches  {fast_seconds:7.2f} s   test evaluation {fast_eval:6.3f} s")
    print(f"   speed-up           {slow_seconds / fast_seconds:7.1f}x  evaluation {slow_eval / fast_eval:.0f}x")
    print(f"   same weights bit for bit: {same}; test accuracy {slow_accuracy:.4f} vs {fast_result.accuracy:.4f}")
    if not same or slow_accuracy != fast_result.accuracy:
        raise SystemExit("the two data paths gave different models")
    return fast


def optimizer_state_bytes(optimizer):
    """Bytes held in the optimizer's per-parameter state (Adam: two moments per parameter)."""
    return sum(t.numel() * t.element_size() for state in optimizer.state.values()
               for t in state.values() if torch.is_tensor(t) and t.dim() > 0)


def timed_finetune(base, train_set, r, steps, torch_adam):
    """(model, seconds, optimizer) of a fine-tune with torch.optim.Adam, or with train's FlatAdam (optimizer None)."""
    model = trainable_copy(base, r, seed=0, cap_rank=True)  # seeds 0: every run draws the same A and batches
    # Made here rather than inside train() so that its state can be measured afterwards.
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3) if torch_adam else None
    data = batches(train_set, 10, shuffle=True, digits=FINETUNE_DIGITS)
    return model, timed(train, model, data, 1, steps, 1e-3, False, None, optimizer)[1], optimizer


def compare_finetuning(base, train_set, ranks=(1, 2, 4, 8, 16, 64), steps=400, repeats=3):
    """Part 2: step time (torch.optim.Adam and train's FlatAdam) and Adam state of full fine-tuning and LoRA."""
    print(f"\n2. Fine-tuning step time and Adam state, {steps} steps of batch 10 on digits "
          f"{', '.join(map(str, FINETUNE_DIGITS))}, best of {repeats}, CPU")
    settings = [("full fine-tuning", None)] + [(f"LoRA r={r}", r) for r in ranks]
    rows = {}
    for _ in range(repeats):  # interleave the settings so that machine noise hits them all alike
        for label, r in settings:
            (torch_model, torch_seconds, adam), (flat_model, flat_seconds, _) = (
                timed_finetune(base, train_set, r, steps, torch_adam) for torch_adam in (True, False))
            pairs = zip(torch_model.parameters(), flat_model.parameters(), strict=True)
            if not all(torch.equal(a, b) for a, b in pairs):
                raise SystemExit(f"{label}: FlatAdam and torch.optim.Adam trained different weights")
            best = [min(s, b) for s, b in zip((torch_seconds, flat_seconds),
                                              rows.get(label, (None, [float("inf")] * 2))[1], strict=True)]
            rows[label] = (count_parameters(torch_model, trainable_only=True), best, optimizer_state_bytes(adam))
    full_params, (full_seconds, _), full_bytes = rows["full fine-tuning"]
    print(f"   {'setting':<17}{'trainable':>10}{'ms/step':>9}{'vs full':>9}{'FlatAdam':>10}{'ratio':>7}"
          f"{'Adam state':>12}{'vs full':>9}")
    for label, (params, (seconds, flat_seconds), state) in rows.items():
        print(f"   {label:<17}{params:>10,}{1000 * seconds / steps:>9.3f}{seconds / full_seconds:>8.2f}x"
              f"{1000 * flat_seconds / steps:>10.3f}{seconds / flat_seconds:>6.2f}x"
              f"{state / 1024:>9.1f} KiB{state / full_bytes:>8.3f}x")
    print("   ms/step with torch.optim.Adam, then with train()'s default FlatAdam (the same weights, bit for bit) "
          "and how many times faster it is")


def stacked_floor(base, train_set, configs, repeats=30):
    """Seconds of one forward and backward of all the configs' adapters stacked, no optimizer: best of `repeats`."""
    models = [trainable_copy(base, config["r"], config["seed"], cap_rank=True) for config in configs]
    stacked = many._stack(base, models)
    data = batches(train_set, 10, shuffle=True, digits=FINETUNE_DIGITS)
    rows = torch.cat([data.order()[:10] for _ in configs])
    x, y = data.dataset.images[rows], data.dataset.labels[rows]
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        stacked.zero_grad(set_to_none=True)
        F.cross_entropy(stacked(x), y, reduction="none").view(len(configs), -1).mean(dim=1).sum().backward()
        best = min(best, time.perf_counter() - start)
    return best


def one_at_a_time(base, train_set, configs, common):
    """[finetune(...) for each config]: what finetune_many replaces."""
    return [finetune(base, train_set, **common, **config) for config in configs]


def compare_many(base, train_set, test_set, ranks=(1, 2, 4, 8, 16, 32, 48, 64), seeds=(0, 1),
                 runs=((1, 200), (2, 50))):
    """Part 3: 16 LoRA fine-tunes one at a time and stacked, for each (threads, steps) in `runs`; same accuracies.

    Two threads get fewer steps: on a CPU that another process keeps busy, one-at-a-time steps at two
    threads can be ten times slower than at one (each small operation waits for the busy core).
    """
    configs = [{"r": r, "seed": seed} for r in ranks for seed in seeds]
    print(f"\n3. {len(configs)} LoRA fine-tunes (r = {', '.join(map(str, ranks))}, cap_rank=True, seeds "
          f"{', '.join(map(str, seeds))}), batch 10 on digits {', '.join(map(str, FINETUNE_DIGITS))}, CPU: "
          "one at a time (finetune) and stacked (finetune_many), in adapter-steps per second; the floor is "
          "one forward and backward of the stack, without Adam")
    print(f"   {'threads':>7}{'steps':>7}{'one at a time':>15}{'stacked':>9}{'ratio':>8}{'floor':>8}"
          f"{'floor ms per adapter-step':>27}")
    results, rates = {}, {}
    for threads, steps in runs:
        torch.set_num_threads(threads)
        common = {"steps": steps, "cap_rank": True}
        ones, one_seconds = timed(one_at_a_time, base, train_set, configs, common)
        together, together_seconds = timed(finetune_many, base, train_set, configs, **common)
        results.setdefault("accuracy", (ones, together))
        per_adapter = stacked_floor(base, train_set, configs) / len(configs)
        adapter_steps = len(configs) * steps
        rates[threads] = adapter_steps / one_seconds
        print(f"   {threads:>7}{steps:>7}{adapter_steps / one_seconds:>15.0f}{adapter_steps / together_seconds:>9.0f}"
              f"{one_seconds / together_seconds:>7.1f}x{1 / per_adapter:>8.0f}{1000 * per_adapter:>27.3f}")
    torch.set_num_threads(1)
    if len(rates) > 1 and min(rates.values()) < max(rates.values()) / 2:
        print("   (one at a time, more threads ran at under half the speed of fewer: another process is using a "
              "core, and each small operation waits for it; compare the stacked rates only)")
    ones, together = results["accuracy"]
    one_accuracies = [evaluate(model, test_set).accuracy for model, _ in ones]
    together_accuracies = [evaluate(model, test_set).accuracy for model, _ in together]
    worst = max(abs(a - b) for a, b in zip(one_accuracies, together_accuracies, strict=True))
    print(f"   test accuracies after {runs[0][1]} steps: {min(one_accuracies):.2%} to {max(one_accuracies):.2%}; "
          f"largest difference between the two ways {100 * worst:.2f} points")
    if worst > 0.002:
        raise SystemExit("finetune_many's accuracies differ from finetune's by more than 0.2 points")


def main():
    """`make bench`."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-dataloader", action="store_true", help="only the fine-tuning comparison")
    args = parser.parse_args()
    # One thread: batches of 10 gain nothing from a second one, and on a busy CPU threads wait on each other.
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU thread\n")
    if args.skip_dataloader:
        torch.manual_seed(0)
        base = lorautil.DigitsNet()
    else:
        base = compare_data_paths()
    train_set = load_mnist(True)
    compare_finetuning(base, train_set)
    compare_many(base, train_set, load_mnist(False))


if __name__ == "__main__":
    main()
