"""Adding LoRA to a model by target name, and merging, removing, disabling and counting it (notebook 03)."""
import math
import re
from contextlib import contextmanager

from torch import nn
from torch.nn.utils import parametrize

from ..linalg import lora_parameter_count
from ..quantize import NF4Linear
from .config import LoraConfig
from .layer import (
    SUPPORTED_LAYERS,
    LoRAParametrization,
    LoRAWrapper,
    check_supported,
    check_variant,
    layer_shape,
    wrap,
)


def lora_layers(model):
    """(name, LoRA module) for every LoRA parametrization or wrapper in `model` (notebook 03)."""
    found = []
    for name, module in model.named_modules():
        if isinstance(module, LoRAWrapper):
            found.append((name, module))
        elif parametrize.is_parametrized(module, "weight"):
            found.extend((name, p) for p in module.parametrizations.weight if isinstance(p, LoRAParametrization))
    return found


def has_lora(model):
    """True if `model` carries LoRA adapters (notebook 03)."""
    return bool(lora_layers(model))


def _matches(name, target):
    """PEFT's rule for a name in target_modules: the module's full name, or its last parts after a dot."""
    return name == target or name.endswith("." + target)


def resolve_targets(model, target_modules):
    """Full names of the layers to adapt: every Linear, or those `target_modules` names (notebook 03).

    PEFT's rules: a list entry matches a module's full name or its ending after a dot, so ["q_proj"]
    names every blocks.<i>.attn.q_proj; a single string is a regular expression that must match a
    whole name ("linear2", or ".*attn.(q|v)_proj"). Unlike PEFT, a list entry that matches nothing is an
    error even when others match. Conv2d and Embedding layers are adapted only when named (notebook 09).
    """
    modules = dict(model.named_modules())
    linears = [name for name, m in modules.items() if isinstance(m, nn.Linear)]  # module order
    if target_modules is None:
        if not linears:
            raise ValueError("the model has no nn.Linear layers to adapt: name its Conv2d or Embedding "
                             "layers in target_modules")
        return linears
    adaptable = [name for name, m in modules.items() if isinstance(m, SUPPORTED_LAYERS)]
    if isinstance(target_modules, str):
        chosen = [name for name in modules if name and re.fullmatch(target_modules, name)]
        if not chosen:
            raise ValueError(f"target_modules={target_modules!r} is a regular expression (as in PEFT) and matches "
                             f"no module's full name; pass a list such as [{target_modules!r}] to match name "
                             f"endings. The model's Linear, Conv2d and Embedding layers are {adaptable}")
        targets = [target_modules]
    else:
        targets, chosen = list(target_modules), []
        for target in targets:
            matched = [name for name in modules if name and _matches(name, target)]
            if not matched:
                raise ValueError(f"unknown target module {target!r}: the model's Linear, Conv2d and Embedding "
                                 f"layers are {adaptable}")
            chosen.extend(matched)
    for name in chosen:
        check_supported(name, modules[name])
    if not targets or len(set(chosen)) != len(chosen):
        raise ValueError(f"target_modules must name each layer once, got {targets} (matching {chosen})")
    return [name for name in modules if name in chosen]  # module order


def layer_rank(name, layer, r, cap_rank):
    """r, or the update's smallest side when cap_rank is set and r exceeds it (notebook 05)."""
    in_features, out_features, kernel_size, _ = layer_shape(layer)
    rows, columns = out_features, in_features * math.prod(kernel_size)
    largest = min(rows, columns)
    if r <= largest:
        return r
    if cap_rank:
        return largest
    raise ValueError(f"r={r} is larger than {name}'s smallest side (an update of {rows}x{columns}): "
                     f"an update of that shape has rank at most {largest}. Choose r <= {largest}, or pass "
                     f"cap_rank=True to use min(r, {largest}) there.")


def expected_lora_parameters(model, r, target_modules=None, use_dora=False):
    """(d + k)·min(r, d, k) summed over the target layers: what add_lora(..., cap_rank=True) trains (notebook 05).

    For a Conv2d, k counts every input of one output: in_channels x kh x kw (notebook 10). use_dora=True
    adds DoRA's magnitude, d more per layer (notebook 12).
    """
    modules = dict(model.named_modules())
    total = 0
    for name in resolve_targets(model, target_modules):
        in_features, out_features, kernel_size, _ = layer_shape(modules[name])
        d, k = out_features, in_features * math.prod(kernel_size)
        total += lora_parameter_count(d, k, min(r, d, k)) + (d if use_dora else 0)
    return total


def add_lora(model, r, alpha=1.0, method="parametrization", target_modules=None, train_bias=False,
             init="kaiming", rslora=False, cap_rank=False, rank_pattern=None, use_dora=False):
    """Add rank-r LoRA to the target layers and freeze everything else; returns `model` (notebook 03).

    method: "parametrization" (W + scaling*B@A on the weight) or "wrapper" (a LoRALinear, LoRAConv2d or
    LoRAEmbedding module). target_modules: None for every nn.Linear, or names (full, or endings as in
    PEFT) of Linear, Conv2d and Embedding layers. train_bias=True keeps the target layers' biases
    trainable, as the documents' wrapper run did. init: "kaiming" (PEFT's default), "gaussian" (PEFT's
    N(0, 1/r)) or "standard_normal" (the documents'). rank_pattern: {full layer name: rank} for layers
    whose rank is not r, as PEFT's rank_pattern (notebook 11).

    Notebook 12, for nn.Linear targets only, as PEFT's use_dora and init_lora_weights="pissa":
    use_dora=True makes each layer's weight m * (W + scaling*B@A) / ||W + scaling*B@A||, the norm per output
    row and detached from the gradient, with m (lora_magnitude_vector) trained and starting at ||W||
    (Liu et al. 2024, "DoRA", arXiv 2402.09353, eq. 2 and 5, section 4.3). init="pissa" takes A and B
    from W's top-r singular triples and replaces W by the residual W - scaling*B@A, so the model starts
    as it was (Meng et al. 2024, "PiSSA", arXiv 2404.02948).
    """
    config = LoraConfig(r, alpha, method, [], train_bias, init, rslora, cap_rank, dict(rank_pattern or {}),
                        use_dora)
    if has_lora(model):
        raise RuntimeError("this model already has LoRA adapters: merge_lora() or remove_lora() them first, "
                           "or load_adapter() to replace their weights")
    config.target_modules = resolve_targets(model, target_modules)
    unknown = sorted(set(config.rank_pattern) - set(config.target_modules))
    if unknown:
        raise ValueError(f"rank_pattern names {unknown}, which are not target layers {config.target_modules}")
    ranks = {name: layer_rank(name, model.get_submodule(name), config.rank_pattern.get(name, r), cap_rank)
             for name in config.target_modules}
    return attach_lora(model, config, ranks)


def attach_lora(model, config, ranks):
    """Add LoRA at the given {layer name: rank}, unchecked, and freeze the rest (add_lora's last step) (notebook 11).

    load_peft uses it directly: a PEFT file may hold a rank above a layer's smallest side, which
    add_lora refuses as wasteful but which must load as saved.
    """
    # Before changing anything (load_peft comes here directly): what cannot be added to these layers.
    quantized = [name for name in config.target_modules if isinstance(model.get_submodule(name), NF4Linear)]
    if quantized and (config.method != "wrapper" or config.use_dora or config.init == "pissa"):
        raise ValueError(f"{quantized} hold 4-bit NF4 weights, which cannot be parametrized or rewritten: add "
                         "plain LoRA to them with method='wrapper', as QLoRA does (notebook 12)")
    for name in config.target_modules:
        check_variant(name, model.get_submodule(name), config.use_dora, config.init)
        if config.init == "pissa":  # its SVD needs r singular directions
            layer_rank(name, model.get_submodule(name), ranks[name], cap_rank=False)
    model.requires_grad_(False)
    for name in config.target_modules:  # in module order, so both methods draw the same A from the same seed
        layer = model.get_submodule(name)
        lora_options = (ranks[name], config.alpha, config.init, config.rslora, config.use_dora)
        if config.method == "parametrization":
            lora = LoRAParametrization.for_layer(layer, *lora_options).to(layer.weight)
            _init_from_weight(lora, layer.weight, config)  # PiSSA's residual goes in before it becomes `original`
            parametrize.register_parametrization(layer, "weight", lora)
        else:
            lora = wrap(layer, *lora_options).to(layer.weight)
            _init_from_weight(lora, layer.weight, config)
            model.set_submodule(name, lora)
        if config.train_bias and getattr(layer, "bias", None) is not None:
            layer.bias.requires_grad_(True)
    model.lora_config = config
    return model


def _init_from_weight(lora, weight, config):
    """PiSSA's A, B and residual, then DoRA's magnitude from the (residual) weight, in PEFT's order (notebook 12)."""
    if config.init == "pissa":
        lora.pissa_init_(weight)
    if config.use_dora:
        lora.dora_init_(weight)


def require_lora(model):
    """Raise a clear error unless `model` has adapters (notebook 03)."""
    if not has_lora(model):
        raise RuntimeError("this model has no LoRA adapters: call add_lora(model, r) first")


def _own_class_then_remove(module, leave_parametrized):
    """remove_parametrizations on `weight`, after giving the module a class of its own.

    copy.deepcopy shares PyTorch's injected Parametrized* class between a model and its copies, and
    removing the parametrization deletes the `weight` property from that class: without this, merging
    a copy would break the original."""
    cls = module.__class__
    module.__class__ = type(cls.__name__, cls.__bases__, dict(cls.__dict__))
    parametrize.remove_parametrizations(module, "weight", leave_parametrized=leave_parametrized)


def _unload(model, keep_update):
    """Take every adapter out, folding its update into the weight first when keep_update is True."""
    require_lora(model)
    for name, lora in lora_layers(model):
        if isinstance(lora, LoRAParametrization):
            _own_class_then_remove(model.get_submodule(name), leave_parametrized=keep_update)
            continue
        if keep_update:
            lora.merge()
        else:
            lora.unmerge()
        model.set_submodule(name, lora.base)
    del model.lora_config
    return model


def merge_lora(model):
    """Fold every adapter into its weight, leaving plain layers (PEFT's merge_and_unload) (notebook 03)."""
    require_lora(model)
    if not all(lora.enabled for _, lora in lora_layers(model)):
        # A disabled parametrization would bake in W alone, a wrapper W + BA: refuse rather than guess.
        raise RuntimeError("some adapters are disabled: merge outside `with disable_lora(model):`")
    return _unload(model, keep_update=True)


def remove_lora(model):
    """Drop every adapter without merging (PEFT's unload); biases trained with train_bias=True stay (notebook 04).

    After init="pissa" the weights left are the residuals W - scaling*B0@A0, not the original W (notebook 12).
    """
    return _unload(model, keep_update=False)


@contextmanager
def disable_lora(model):
    """Turn the adapters off inside this block: exactly the base model unless biases were trained (notebook 03).

    As with PEFT's bias="all", biases trained with train_bias=True belong to the base layers and stay.
    After init="pissa" the base is the residual model (W - scaling*B0@A0 in every target), not the
    original one, as with PEFT's disable_adapter() (notebook 12).
    """
    require_lora(model)
    layers = [lora for _, lora in lora_layers(model)]
    if any(getattr(lora, "merged", False) for lora in layers):
        raise RuntimeError("some adapters are merged into their weights: unmerge() them before "
                           "disabling, or keep an unmerged copy of the model")
    previous = [lora.enabled for lora in layers]
    for lora in layers:
        lora.enabled = False
    try:
        yield model
    finally:
        for lora, was in zip(layers, previous, strict=True):
            lora.enabled = was


def trainable_summary(model):
    """PEFT's line: 'trainable params: 3,124 || all params: 238,270 || trainable%: 1.3111' (notebook 03)."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / total:.4f}"
