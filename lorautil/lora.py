"""LoRA layers: a weight parametrization (notebook 03) and a wrapper layer (notebook 04), plus
PEFT-style helpers to add, merge, disable, count, save and load adapters."""
import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize

from .files import atomic_path

METHODS = ("parametrization", "wrapper")
INITS = ("gaussian", "kaiming")


def lora_scaling(r, alpha, rslora=False):
    """alpha / r, or alpha / sqrt(r) for rsLoRA (notebook 03)."""
    return alpha / math.sqrt(r) if rslora else alpha / r


def init_lora_(A, B, init="gaussian"):
    """A ~ N(0, 1) as in the documents and the paper, or PEFT's kaiming-uniform; B = 0 (notebook 03)."""
    if init == "gaussian":
        nn.init.normal_(A, mean=0.0, std=1.0)
    elif init == "kaiming":
        nn.init.kaiming_uniform_(A, a=math.sqrt(5))
    else:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    nn.init.zeros_(B)


class LoRAParametrization(nn.Module):
    """Maps a Linear weight W (out, in) to W + scaling * B @ A, with A (r, in) and B (out, r) (notebook 03)."""

    def __init__(self, in_features, out_features, r, alpha=1.0, init="gaussian", rslora=False):
        super().__init__()
        self.lora_A = nn.Parameter(torch.empty(r, in_features))
        self.lora_B = nn.Parameter(torch.empty(out_features, r))
        init_lora_(self.lora_A, self.lora_B, init)
        self.r, self.alpha, self.scaling = r, alpha, lora_scaling(r, alpha, rslora)
        self.enabled = True

    def delta_weight(self):
        """The update scaling * B @ A, shaped like the weight (out, in)."""
        return (self.lora_B @ self.lora_A) * self.scaling

    def forward(self, weight):
        return weight + self.delta_weight() if self.enabled else weight

    def extra_repr(self):
        return f"r={self.r}, alpha={self.alpha}, scaling={self.scaling:g}, enabled={self.enabled}"


class LoRALinear(nn.Module):
    """An nn.Linear plus a LoRA branch: base(x) + scaling * x @ A.T @ B.T (notebook 04).

    merge() folds the update into the base weight (no extra latency); unmerge() takes it out again.
    """

    def __init__(self, base, r, alpha=1.0, init="gaussian", rslora=False):
        super().__init__()
        self.base = base
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features))
        self.lora_B = nn.Parameter(torch.empty(base.out_features, r))
        init_lora_(self.lora_A, self.lora_B, init)
        self.r, self.alpha, self.scaling = r, alpha, lora_scaling(r, alpha, rslora)
        self.enabled, self.merged = True, False

    def delta_weight(self):
        """The update scaling * B @ A, shaped like the base weight (out, in)."""
        return (self.lora_B @ self.lora_A) * self.scaling

    def forward(self, x):
        if self.merged or not self.enabled:
            return self.base(x)
        return self.base(x) + (x @ self.lora_A.T @ self.lora_B.T) * self.scaling

    def extra_repr(self):
        return f"r={self.r}, alpha={self.alpha}, scaling={self.scaling:g}, merged={self.merged}"

    @torch.no_grad()
    def merge(self):
        """W <- W + scaling * B @ A; the layer then costs what a plain Linear costs."""
        if not self.merged:
            self.base.weight += self.delta_weight()
            self.merged = True

    @torch.no_grad()
    def unmerge(self):
        """W <- W - scaling * B @ A: the base weight again, up to float rounding."""
        if self.merged:
            self.base.weight -= self.delta_weight()
            self.merged = False


@dataclass
class LoraConfig:
    """What add_lora was asked for, saved beside an adapter's tensors (notebook 03)."""

    r: int
    alpha: float = 1.0
    method: str = "parametrization"
    target_modules: list = field(default_factory=list)
    train_bias: bool = False
    init: str = "gaussian"
    rslora: bool = False
    cap_rank: bool = False


def lora_layers(model):
    """(name, LoRA module) for every LoRA parametrization or wrapper in `model` (notebook 03)."""
    found = []
    for name, module in model.named_modules():
        if isinstance(module, LoRALinear):
            found.append((name, module))
        elif parametrize.is_parametrized(module, "weight"):
            for p in module.parametrizations.weight:
                if isinstance(p, LoRAParametrization):
                    found.append((name, p))
    return found


def has_lora(model):
    """True if `model` carries LoRA adapters (notebook 03)."""
    return bool(lora_layers(model))


def _check_targets(model, target_modules):
    """Resolve target names to Linear layers, with errors that list what exists."""
    linears = {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    if target_modules is None:
        if not linears:
            raise ValueError("the model has no nn.Linear layers to adapt")
        return list(linears)
    if isinstance(target_modules, str):
        target_modules = [target_modules]
    modules = dict(model.named_modules())
    for name in target_modules:
        if name not in modules:
            raise ValueError(f"unknown target module {name!r}: the model's Linear layers are "
                             f"{sorted(linears)}")
        if name not in linears:
            raise TypeError(f"target {name!r} is a {type(modules[name]).__name__}, not an nn.Linear: "
                            f"LoRA here adapts Linear layers; choose from {sorted(linears)}")
    if len(set(target_modules)) != len(target_modules) or not target_modules:
        raise ValueError(f"target_modules must name each layer once, got {target_modules}")
    return list(target_modules)


def _layer_rank(name, layer, r, cap_rank):
    largest = min(layer.in_features, layer.out_features)
    if r <= largest:
        return r
    if cap_rank:
        return largest
    raise ValueError(f"r={r} is larger than {name}'s smallest side ({layer.out_features}x"
                     f"{layer.in_features}): an update of that shape has rank at most {largest}. "
                     "Choose r <= {0}, or pass cap_rank=True to use min(r, {0}) there.".format(largest))


def add_lora(model, r, alpha=1.0, method="parametrization", target_modules=None, train_bias=False,
             init="gaussian", rslora=False, cap_rank=False):
    """Add rank-r LoRA to the target Linear layers and freeze everything else; returns `model` (notebook 03).

    method: "parametrization" (W + scaling*B@A on the weight) or "wrapper" (a LoRALinear module).
    train_bias=True keeps the target layers' biases trainable, as the documents' wrapper run did.
    """
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ValueError(f"r must be a whole number >= 1, got {r!r}")
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    if has_lora(model):
        raise RuntimeError("this model already has LoRA adapters: merge_lora() or remove_lora() "
                           "them first, or load_adapter() to replace their weights")
    targets = _check_targets(model, target_modules)
    modules = dict(model.named_modules())
    ranks = {name: _layer_rank(name, modules[name], r, cap_rank) for name in targets}
    for p in model.parameters():
        p.requires_grad_(False)
    for name in targets:  # in module order, so both methods draw the same A from the same seed
        layer = modules[name]
        weight = layer.weight
        if method == "parametrization":
            lora = LoRAParametrization(layer.in_features, layer.out_features, ranks[name], alpha,
                                       init, rslora).to(weight.device, weight.dtype)
            parametrize.register_parametrization(layer, "weight", lora)
        else:
            lora = LoRALinear(layer, ranks[name], alpha, init, rslora)
            lora.to(weight.device, weight.dtype)
            parent_name, _, child = name.rpartition(".")
            setattr(modules[parent_name] if parent_name else model, child, lora)
        if train_bias and layer.bias is not None:
            layer.bias.requires_grad_(True)
    model.lora_config = LoraConfig(r, float(alpha), method, targets, train_bias, init, rslora, cap_rank)
    return model


def _require_lora(model):
    if not has_lora(model):
        raise RuntimeError("this model has no LoRA adapters: call add_lora(model, r) first")


def _unload(model, keep_update):
    """Take every adapter out, folding its update into the weight first when keep_update is True."""
    _require_lora(model)
    for name, lora in lora_layers(model):
        if isinstance(lora, LoRAParametrization):
            _remove_parametrization(model.get_submodule(name), leave_parametrized=keep_update)
            continue
        if keep_update and not lora.merged:
            lora.merge()
        elif not keep_update and lora.merged:
            lora.unmerge()
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, lora.base)
    del model.lora_config
    return model


def _remove_parametrization(module, leave_parametrized):
    """remove_parametrizations on `weight`, after giving the module a class of its own.

    copy.deepcopy shares PyTorch's injected Parametrized* class between a model and its copies, and
    removing the parametrization deletes the `weight` property from that class: without this, merging
    a copy would break the original."""
    cls = module.__class__
    module.__class__ = type(cls.__name__, cls.__bases__, dict(cls.__dict__))
    parametrize.remove_parametrizations(module, "weight", leave_parametrized=leave_parametrized)


def merge_lora(model):
    """Fold every adapter into its base weight and leave plain nn.Linear layers (PEFT's merge_and_unload) (notebook 03)."""
    _require_lora(model)
    if not all(lora.enabled for _, lora in lora_layers(model)):
        # A disabled parametrization would bake in W alone, a wrapper W + BA: refuse rather than guess.
        raise RuntimeError("some adapters are disabled: merge outside `with disable_lora(model):`")
    return _unload(model, keep_update=True)


def remove_lora(model):
    """Drop every adapter without merging (PEFT's unload); biases trained with train_bias=True stay (notebook 03)."""
    return _unload(model, keep_update=False)


@contextmanager
def disable_lora(model):
    """Turn the adapters off inside this block: exactly the base model unless biases were trained (notebook 03).

    As with PEFT's bias="all", biases trained with train_bias=True belong to the base layers and stay.
    """
    _require_lora(model)
    layers = [lora for _, lora in lora_layers(model)]
    merged = [lora for lora in layers if getattr(lora, "merged", False)]
    if merged:
        raise RuntimeError("some adapters are merged into their weights: unmerge() them before "
                           "disabling, or keep an unmerged copy of the model")
    previous = [lora.enabled for lora in layers]
    for lora in layers:
        lora.enabled = False
    try:
        yield model
    finally:
        for lora, was in zip(layers, previous):
            lora.enabled = was


def trainable_summary(model):
    """PEFT's line: 'trainable params: 3,124 || all params: 238,270 || trainable%: 1.3111' (notebook 03)."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / total:.4f}"


def adapter_state(model):
    """The adapter's tensors only: every A and B, plus the biases when they were trained (notebook 04)."""
    _require_lora(model)
    state = {}
    for name, lora in lora_layers(model):
        state[f"{name}.lora_A"] = lora.lora_A.detach().cpu().clone()
        state[f"{name}.lora_B"] = lora.lora_B.detach().cpu().clone()
    if model.lora_config.train_bias:
        for name in model.lora_config.target_modules:
            layer = model.get_submodule(name)
            bias = layer.base.bias if isinstance(layer, LoRALinear) else layer.bias
            if bias is not None:
                state[f"{name}.bias"] = bias.detach().cpu().clone()
    return state


def save_adapter(model, path):
    """Save only the adapter (tensors and its LoraConfig) to `path`, atomically (notebook 04)."""
    payload = {"state": adapter_state(model), "config": asdict(model.lora_config)}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def _adapter_target(model, key):
    """The model tensor that an adapter entry such as 'linear1.lora_A' or 'linear1.bias' loads into."""
    name, _, kind = key.rpartition(".")
    if kind == "bias":
        layer = model.get_submodule(name)
        return layer.base.bias if isinstance(layer, LoRALinear) else layer.bias
    return getattr(dict(lora_layers(model))[name], kind)


def load_adapter(model, path):
    """Load an adapter saved by save_adapter: adds LoRA first if the model has none (notebook 04)."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or "config" not in payload or "state" not in payload:
        raise ValueError(f"{path} is not an adapter saved by lorautil.save_adapter")
    config = LoraConfig(**payload["config"])
    added = not has_lora(model)
    if added:
        add_lora(model, **asdict(config))
    current = model.lora_config
    try:
        if (current.target_modules, current.method, current.train_bias) != \
                (config.target_modules, config.method, config.train_bias):
            raise ValueError(f"adapter {path} was made for targets {config.target_modules} with method "
                             f"{config.method!r}, train_bias={config.train_bias}; this model has "
                             f"{current.target_modules} with {current.method!r}, train_bias="
                             f"{current.train_bias}. remove_lora(model) first to load it.")
        # Same shapes but another alpha (or rsLoRA) would scale B @ A wrongly without any error.
        if (current.alpha, current.rslora) != (config.alpha, config.rslora):
            raise ValueError(f"adapter {path} was trained with alpha={config.alpha}, rslora={config.rslora}; "
                             f"this model has alpha={current.alpha}, rslora={current.rslora}. "
                             "remove_lora(model) first to load it.")
        # Check every shape before copying anything, so a misfit leaves the model as it was.
        targets = {key: _adapter_target(model, key) for key in payload["state"]}
        for key, tensor in payload["state"].items():
            if targets[key].shape != tensor.shape:
                raise ValueError(f"adapter {path} does not fit this model: {key} has shape "
                                 f"{tuple(tensor.shape)}, the model expects {tuple(targets[key].shape)}")
    except Exception:
        if added:
            remove_lora(model)
        raise
    with torch.no_grad():
        for key, tensor in payload["state"].items():
            targets[key].copy_(tensor)
    return model
