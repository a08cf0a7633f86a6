"""Adapter files: only the adapter's tensors and its LoraConfig, saved and loaded (notebook 04)."""
from dataclasses import asdict
from pathlib import Path

import torch

from ..files import atomic_path
from .config import LoraConfig
from .layer import base_layer
from .model import add_lora, has_lora, lora_layers, remove_lora, require_lora


def adapter_state(model):
    """The adapter's tensors only: every A and B, plus the biases when they were trained (notebook 04)."""
    require_lora(model)
    state = {}
    for name, lora in lora_layers(model):
        state[f"{name}.lora_A"] = lora.lora_A.detach().cpu().clone()
        state[f"{name}.lora_B"] = lora.lora_B.detach().cpu().clone()
    if model.lora_config.train_bias:
        for name in model.lora_config.target_modules:
            bias = base_layer(model.get_submodule(name)).bias
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
        return base_layer(model.get_submodule(name)).bias
    return getattr(dict(lora_layers(model))[name], kind)


def _check_fits(model, config, state, path):
    """Raise ValueError unless the adapter in `path` matches the model's adapters in settings and shapes."""
    current = model.lora_config
    if (current.target_modules, current.method, current.train_bias) != \
            (config.target_modules, config.method, config.train_bias):
        raise ValueError(f"adapter {path} was made for targets {config.target_modules} with method "
                         f"{config.method!r}, train_bias={config.train_bias}; this model has "
                         f"{current.target_modules} with {current.method!r}, train_bias={current.train_bias}. "
                         "remove_lora(model) first to load it.")
    # Same shapes but another alpha (or rsLoRA) would scale B @ A wrongly without any error.
    if (current.alpha, current.rslora) != (config.alpha, config.rslora):
        raise ValueError(f"adapter {path} was trained with alpha={config.alpha}, rslora={config.rslora}; "
                         f"this model has alpha={current.alpha}, rslora={current.rslora}. "
                         "remove_lora(model) first to load it.")
    for key, tensor in state.items():
        expected = _adapter_target(model, key).shape
        if expected != tensor.shape:
            raise ValueError(f"adapter {path} does not fit this model: {key} has shape {tuple(tensor.shape)}, "
                             f"the model expects {tuple(expected)}")


def load_adapter(model, path):
    """Load an adapter saved by save_adapter: adds LoRA first if the model has none (notebook 04)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a file that is not a checkpoint
        raise ValueError(f"{path} is not an adapter saved by lorautil.save_adapter ({error})") from error
    if not isinstance(payload, dict) or "config" not in payload or "state" not in payload:
        raise ValueError(f"{path} is not an adapter saved by lorautil.save_adapter")
    config = LoraConfig(**payload["config"])
    added = not has_lora(model)
    if added:
        add_lora(model, **asdict(config))
    try:  # check everything before copying anything, so a misfit leaves the model as it was
        _check_fits(model, config, payload["state"], path)
    except ValueError:
        if added:
            remove_lora(model)
        raise
    with torch.no_grad():
        for key, tensor in payload["state"].items():
            _adapter_target(model, key).copy_(tensor)
    return model
