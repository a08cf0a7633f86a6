"""Training many LoRA adapters at once on one frozen base, as Punica and S-LoRA serve them (notebook 05).

finetune_many(base, train_set, configs, **common) returns what [finetune(base, train_set, **common, **c)
for c in configs] returns, from one stacked model: each target nn.Linear holds every adapter's A and B,
zero-padded to the largest rank, and a batch holds each adapter's own batch one after the other. The
frozen base then does one big matmul for all adapters, and only the small LoRA branch is per adapter.
"""
import copy
import inspect
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..data import batches
from ..optim import FlatAdam
from .model import add_lora, lora_layers, resolve_targets

# Options every run must share, so that the adapters' batches have the same size and stack.
SHARED = ("steps", "batch_size", "digits")
# finetune() options that finetune_many cannot stack: they need a run of their own.
REFUSED = {"train_only": "fully trains layers", "on_step": "calls back after each run's steps"}


class _StackedBranch(torch.autograd.Function):
    """out + scaling * x @ A^T @ B^T per adapter, with a backward that writes each gradient in its factor's layout.

    Autograd through A.transpose(1, 2) would produce dA transposed and copy it into place every step; here
    dA = dh^T x and dB = g^T h come out as (n, r, in) and (n, out, r) directly, and dx only when needed.
    """

    @staticmethod
    def forward(ctx, out, rows, lora_A, lora_B, scaling):
        hidden = torch.bmm(rows, lora_A.transpose(1, 2)).mul_(scaling)  # (n, b, r): x A^T, scaled
        ctx.save_for_backward(rows, lora_A, lora_B, scaling, hidden)
        return torch.baddbmm(out, hidden, lora_B.transpose(1, 2))  # out + hidden B^T, in one call

    @staticmethod
    def backward(ctx, grad):
        rows, lora_A, lora_B, scaling, hidden = ctx.saved_tensors
        # (n, r, b), made contiguous: MKL's batched product with a transposed left factor took twice as long.
        grad_hidden = torch.bmm(grad, lora_B).transpose(1, 2).contiguous().mul_(scaling)
        grad_rows = torch.bmm(grad_hidden.transpose(1, 2), lora_A) if ctx.needs_input_grad[1] else None
        grad_A = torch.bmm(grad_hidden, rows)  # (n, r, in)
        grad_B = torch.bmm(grad.transpose(1, 2), hidden)  # (n, out, r)
        return grad, grad_rows, grad_A, grad_B, None


class StackedLoRALinear(nn.Module):
    """A frozen nn.Linear plus n LoRA adapters; rows [i*b, (i+1)*b) of the input belong to adapter i (notebook 05).

    lora_A (n, r_max, in) and lora_B (n, out, r_max) hold each adapter's factors zero-padded to the largest
    rank, scaling (n,) its alpha / r. The base weight does one matmul over all n*b rows; the LoRA branch
    reshapes them to (n, b, in) and uses batched matmuls (torch.bmm), one small product per adapter.
    """

    def __init__(self, base, lora_A, lora_B, scaling):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"StackedLoRALinear adapts an nn.Linear, got {type(base).__name__}")
        n, r_max, in_features = lora_A.shape
        if lora_B.shape != (n, base.out_features, r_max) or in_features != base.in_features:
            raise ValueError(f"A {tuple(lora_A.shape)} and B {tuple(lora_B.shape)} do not fit "
                             f"{base} as (n, r, in) and (n, out, r)")
        self.base = base
        self.lora_A, self.lora_B = nn.Parameter(lora_A), nn.Parameter(lora_B)
        self.register_buffer("scaling", torch.as_tensor(scaling, dtype=lora_A.dtype, device=lora_A.device)
                             .view(n, 1, 1))

    def forward(self, x):
        n = self.lora_A.shape[0]
        out = self.base(x)  # one matmul for every adapter's rows: the frozen part is shared
        rows = x.reshape(n, -1, x.shape[-1])  # (n, b, in): each adapter's own rows
        update = _StackedBranch.apply(out.view(n, -1, out.shape[-1]), rows, self.lora_A, self.lora_B, self.scaling)
        return update.view(out.shape)

    def extra_repr(self):
        n, r_max, _ = self.lora_A.shape
        return f"adapters={n}, r_max={r_max}"


def _finetune_defaults():
    from ..training import finetune  # here, not at the top: training imports this package

    return {name: parameter.default for name, parameter in inspect.signature(finetune).parameters.items()
            if parameter.default is not inspect.Parameter.empty}


LORA_OPTIONS = tuple(name for name in inspect.signature(add_lora).parameters if name not in ("model", "r"))


def _same(value):
    """digits=(2, 3) and digits=[2, 3] are the same request."""
    return tuple(value) if isinstance(value, (list, tuple)) else value


def _runs(configs, common):
    """Each config merged over `common` and finetune's defaults, checked to be stackable."""
    defaults = _finetune_defaults()
    if any("progress" in config for config in configs):
        raise TypeError("pass progress= to finetune_many itself, not inside a config")
    allowed = set(defaults) | {"r"}
    unknown = sorted(set(common).union(*configs) - allowed - set(LORA_OPTIONS))
    if unknown:
        raise TypeError(f"unknown finetune options {unknown}; finetune_many takes r, seed, lr and "
                        f"{', '.join(LORA_OPTIONS)} per config, and {', '.join(SHARED)} for all")
    runs = []
    for index, config in enumerate(configs):
        both = sorted(set(config) & set(common))
        if both:
            raise ValueError(f"config {index} sets {both}, which are also given for all runs: give each "
                             "option either in the configs or as a keyword, not both")
        run = {**defaults, **common, **config}
        why = [f"{name} {reason}" for name, reason in REFUSED.items() if run.get(name) is not None]
        if run["r"] is None:
            why.append("r=None fully fine-tunes the model")
        if run.get("train_bias"):
            why.append("train_bias=True trains the target layers' biases")
        if run.get("use_dora") or run.get("init") == "pissa":
            why.append("DoRA and PiSSA change the base weights' role, which the stacked layer does not model")
        if why:
            raise ValueError(f"config {index} ({config}) cannot be stacked: {'; '.join(why)}. finetune_many "
                             "trains LoRA adapters (r >= 1) on nn.Linear layers only: use finetune() for it")
        runs.append(run)
    for name in SHARED:
        values = [run[name] for run in runs]
        if any(_same(value) != _same(values[0]) for value in values):
            raise ValueError(f"every config must use the same {name} so that their batches stack, got {values}: "
                             f"pass {name}= once for all, or call finetune_many once per {name}")
    return runs


def _check_stackable(base_model, runs):
    """Refuse what a stacked model cannot reproduce: non-Linear targets, dropout, batch norm."""
    modules = dict(base_model.named_modules())
    for index, run in enumerate(runs):
        for name in resolve_targets(base_model, run.get("target_modules")):
            if not isinstance(modules[name], nn.Linear):
                raise ValueError(f"config {index} targets {name!r}, a {type(modules[name]).__name__}: finetune_many "
                                 "stacks LoRA on nn.Linear layers only; use finetune() for Conv2d and Embedding")
    for name, module in base_model.named_modules():
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
            raise ValueError(f"{name!r} is dropout: its masks draw from the random generator during training, so "
                             "stacked runs could not reproduce finetune()'s batch orders; use finetune()")
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            raise ValueError(f"{name!r} is batch norm: its statistics would mix the stacked adapters' batches; "
                             "use finetune()")


def _stack(base_model, models):
    """One deepcopy of the base whose adapted Linears are StackedLoRALinear layers holding every model's A and B."""
    per_model = [{name: lora for name, lora in lora_layers(model)} for model in models]
    names = [name for name, _ in base_model.named_modules() if any(name in loras for loras in per_model)]
    stacked = copy.deepcopy(base_model).requires_grad_(False)
    for name in names:
        layer = stacked.get_submodule(name)
        weight = layer.weight
        r_max = max(loras[name].r for loras in per_model if name in loras)
        lora_A = weight.new_zeros(len(models), r_max, layer.in_features)
        lora_B = weight.new_zeros(len(models), layer.out_features, r_max)
        scaling = [0.0] * len(models)  # a run that does not target this layer keeps rank 0 there: all zeros
        for i, loras in enumerate(per_model):
            if name in loras:
                lora = loras[name]
                lora_A[i, :lora.r] = lora.lora_A.detach()
                lora_B[i, :, :lora.r] = lora.lora_B.detach()
                scaling[i] = lora.scaling
        stacked.set_submodule(name, StackedLoRALinear(layer, lora_A, lora_B, scaling))
    return stacked


def _slots(stacked, models, lrs):
    """(stacked A or B, the index of some models' unpadded factors in it, their lr) for FlatAdam.

    Neighbouring models with the same rank at a layer and the same lr share one slot: fewer, larger slices.
    Updating each slice with its own lr is exactly n separate torch.optim.Adam runs, bit for bit. The zero
    padding is left out: it gets zero gradients (it multiplies zeros), so Adam would keep it at zero anyway,
    and skipping it saves work (torch.sqrt is slow on zeros on a CPU).
    """
    slots = []
    for name, layer in stacked.named_modules():
        if not isinstance(layer, StackedLoRALinear):
            continue
        ranks = [dict(lora_layers(model)).get(name) for model in models]
        ranks = [0 if lora is None else lora.r for lora in ranks]
        start = 0
        for end in range(1, len(models) + 1):
            if end < len(models) and (ranks[end], lrs[end]) == (ranks[start], lrs[start]):
                continue
            if ranks[start]:
                group, rank = slice(start, end), slice(0, ranks[start])
                slots += [(layer.lora_A, (group, rank), lrs[start]),
                          (layer.lora_B, (group, slice(None), rank), lrs[start])]
            start = end
    return slots


@torch.no_grad()
def _unstack(stacked, models):
    """Copy each model's trained slice of the stacked A and B, and of their last gradients, into its adapters."""
    for i, model in enumerate(models):
        for name, lora in lora_layers(model):
            layer = stacked.get_submodule(name)
            for factor, stacked_factor, index in ((lora.lora_A, layer.lora_A, (i, slice(0, lora.r))),
                                                  (lora.lora_B, layer.lora_B, (i, slice(None), slice(0, lora.r)))):
                factor.copy_(stacked_factor[index])
                if stacked_factor.grad is not None:  # finetune's models keep their last step's gradients too
                    factor.grad = stacked_factor.grad[index].clone()
        model.train()  # as train() leaves it


def finetune_many(base_model, train_set, configs, progress=False, **common):
    """[finetune(base_model, train_set, **common, **config) for config in configs], trained together (notebook 05).

    Each config holds one run's r, seed, lr and add_lora options (alpha, init, rslora, cap_rank,
    target_modules, rank_pattern, method); `common` holds options for all runs (steps, batch_size,
    digits, and any per-run option they share). Returns the same list of (model, losses): every run
    draws its A and its batch order from its own seed exactly as finetune does, and its gradients and
    Adam steps are its own. Only LoRA on nn.Linear layers stacks; use finetune() for anything else.
    """
    from ..training import trainable_copy  # here, not at the top: training imports this package

    configs = [dict(config) for config in configs]
    runs = _runs(configs, common)
    if not runs:
        return []
    _check_stackable(base_model, runs)
    steps, batch_size, digits = (runs[0][name] for name in SHARED)
    data = batches(train_set, batch_size, shuffle=True, digits=digits)
    epochs = math.ceil(steps / len(data))
    models, orders = [], []
    for run in runs:
        lora_options = {name: run[name] for name in LORA_OPTIONS if name in run}
        # As finetune: seed, then A drawn layer by layer in add_lora; then each epoch's order, which train()
        # draws from the global generator as each epoch starts (nothing else draws in between), all up front.
        models.append(trainable_copy(base_model, run["r"], run["seed"], None, **lora_options))
        orders.append([data.order() for _ in range(epochs)])

    # Models with the same lr and ranks sit side by side in the stack, so that FlatAdam updates them as one
    # slice; their order in the stack changes nothing else.
    place = sorted(range(len(runs)), key=lambda i: (runs[i]["lr"], [(name, lora.r) for name, lora in
                                                                    lora_layers(models[i])]))
    models, orders, lrs = [models[i] for i in place], [orders[i] for i in place], [runs[i]["lr"] for i in place]
    stacked = _stack(base_model, models)
    losses = _train_stacked(stacked, FlatAdam(_slots(stacked, models, lrs)), data, orders, steps, progress)
    _unstack(stacked, models)
    results = [None] * len(runs)
    for column, i in enumerate(place):
        results[i] = (models[column], losses[:, column].tolist())
    return results


def _train_stacked(stacked, optimizer, data, orders, steps, progress):
    """train() for the stacked model: orders[i][epoch] is model i's sample order; the (steps, n) losses."""
    from ..training import model_device, model_dtype, tqdm  # training imports this package

    device, dtype = model_device(stacked), model_dtype(stacked)
    images, labels = data.dataset.images, data.dataset.labels
    n, batch_size = len(orders), data.batch_size
    losses = torch.empty(steps, n, dtype=dtype, device=device)  # .tolist() at the end: no sync per step
    stacked.train()
    step = 0
    for epoch in range(len(orders[0])):
        order = torch.stack([run_orders[epoch] for run_orders in orders]).to(labels.device)  # (n, epoch size)
        epoch_sum = 0.0
        with tqdm(total=min(len(data), steps - step), desc=f"Epoch {epoch + 1} ({n} adapters)",
                  disable=not progress) as bar:
            for start in range(0, order.shape[1], batch_size):
                rows = order[:, start:start + batch_size].reshape(-1)  # model 0's batch, then model 1's...
                x = images.index_select(0, rows).to(device, dtype, non_blocking=True)  # as images[rows], 5x faster
                y = labels.index_select(0, rows).to(device, non_blocking=True)
                optimizer.zero_grad()
                # Each model's mean loss over its own batch, summed: model i's gradient is its own run's.
                loss = F.cross_entropy(stacked(x), y, reduction="none").view(n, -1).mean(dim=1)
                loss.sum().backward()
                optimizer.step()
                losses[step] = loss.detach()
                step += 1
                if progress:
                    epoch_sum += losses[step - 1].mean().item()
                    bar.set_postfix(loss=epoch_sum / (step - epoch * len(data)), refresh=False)
                bar.update()
                if step >= steps:
                    return losses
    return losses
