"""Adapter files: lorautil's own (the adapter's tensors and its LoraConfig, notebook 04) and PEFT's (notebook 11),
with DoRA's magnitudes and PiSSA adapters (notebook 12)."""
import json
import math
from dataclasses import asdict
from pathlib import Path

import torch

from ..files import atomic_path
from .config import LoraConfig
from .layer import base_layer
from .model import add_lora, attach_lora, has_lora, lora_layers, remove_lora, require_lora, resolve_targets


def adapter_state(model):
    """The adapter's tensors only: every A and B, plus the biases when they were trained (notebook 04).

    With use_dora=True also each layer's magnitude, as '<layer>.lora_magnitude_vector' (notebook 12).
    """
    require_lora(model)
    state = {}
    for name, lora in lora_layers(model):
        state[f"{name}.lora_A"] = lora.lora_A.detach().cpu().clone()
        state[f"{name}.lora_B"] = lora.lora_B.detach().cpu().clone()
        if lora.use_dora:
            state[f"{name}.lora_magnitude_vector"] = lora.lora_magnitude_vector.detach().cpu().clone()
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
    # A DoRA adapter needs magnitudes, a PiSSA one the residual base weights: neither fits the other kind.
    if (current.use_dora, current.init == "pissa") != (config.use_dora, config.init == "pissa"):
        raise ValueError(f"adapter {path} has use_dora={config.use_dora}, init={config.init!r}; this model has "
                         f"use_dora={current.use_dora}, init={current.init!r}. remove_lora(model) first to load it.")
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
    """Load an adapter saved by save_adapter: adds LoRA first if the model has none (notebook 04).

    For a PiSSA adapter (init="pissa") pass the original model: adding LoRA computes the same residual
    weights again from it before A and B are loaded (notebook 12).
    """
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


# PEFT's adapter files (notebook 11): the tensors under PEFT's key names in adapter_model.safetensors,
# the settings in adapter_config.json. Read by PeftModel.from_pretrained(base_model, directory), offline.
PEFT_PREFIX = "base_model.model."
PEFT_CONFIG, PEFT_WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
# PEFT has no N(0, 1) init: it is recorded as "kaiming". "pissa" matters when loading: PEFT (and load_peft)
# compute the residual base weights again from the model they are given, which must be the original one.
PEFT_INITS = {"kaiming": True, "gaussian": "gaussian", "pissa": "pissa"}
# PEFT inits that, like PiSSA, change the base weights in ways lorautil does not implement.
PEFT_BASE_CHANGING_INITS = ("pissa_niter_", "olora", "corda", "loftq", "lora_ga")
# Options a PEFT adapter may carry that lorautil does not implement: loading one would change its outputs.
PEFT_UNSUPPORTED = {"fan_in_fan_out": False, "lora_bias": False, "alpha_pattern": {},
                    "layers_to_transform": None, "layers_pattern": None, "target_parameters": None,
                    "trainable_token_indices": None, "layer_replication": None}
PEFT_MAGNITUDE = "lora_magnitude_vector"  # DoRA's m: PEFT saves base_model.model.<layer>.lora_magnitude_vector


def _peft_key(name, lora, factor):
    """PEFT's key for one factor: lora_A.weight for Linear and Conv2d, lora_embedding_A for Embedding."""
    suffix = f"lora_embedding_{factor}" if lora.embedding else f"lora_{factor}.weight"
    return f"{PEFT_PREFIX}{name}.{suffix}"


def peft_state(model):
    """The adapter's tensors under PEFT's key names, e.g. base_model.model.linear1.lora_A.weight (notebook 11).

    DoRA's magnitude is base_model.model.<layer>.lora_magnitude_vector, shape (out,) (notebook 12).
    """
    state = {}
    for name, lora in lora_layers(model):
        state[_peft_key(name, lora, "A")] = lora.lora_A.detach().cpu().contiguous()
        state[_peft_key(name, lora, "B")] = lora.lora_B.detach().cpu().contiguous()
        if lora.use_dora:
            state[f"{PEFT_PREFIX}{name}.{PEFT_MAGNITUDE}"] = lora.lora_magnitude_vector.detach().cpu().contiguous()
    if model.lora_config.train_bias:  # PEFT's bias="lora_only": the target layers' biases, under base_layer
        for name in model.lora_config.target_modules:
            bias = getattr(base_layer(model.get_submodule(name)), "bias", None)
            if bias is not None:
                state[f"{PEFT_PREFIX}{name}.base_layer.bias"] = bias.detach().cpu().contiguous()
    return state


def peft_config(model):
    """adapter_config.json's settings for `model`'s adapters, in PEFT's names (notebook 11)."""
    require_lora(model)
    config = model.lora_config
    ranks = {name: lora.r for name, lora in lora_layers(model)}
    return {
        "peft_type": "LORA", "task_type": None, "base_model_name_or_path": None, "inference_mode": True,
        "r": config.r, "lora_alpha": config.alpha, "use_rslora": config.rslora,
        "target_modules": list(config.target_modules),
        "rank_pattern": {name: rank for name, rank in ranks.items() if rank != config.r},
        "bias": "lora_only" if config.train_bias else "none",
        "init_lora_weights": PEFT_INITS.get(config.init, True), "lora_dropout": 0.0, "modules_to_save": None,
        "use_dora": config.use_dora, **PEFT_UNSUPPORTED,
    }


def save_peft(model, directory, convert_pissa_to_lora=None):
    """Write `model`'s adapters as PEFT does: adapter_config.json + adapter_model.safetensors (notebook 11).

    PeftModel.from_pretrained(base_model, directory) loads them with the same outputs. Each file is
    written to a temporary name and renamed, weights first, so an interruption leaves no half-written file.

    Notebook 12: a DoRA model's file holds its magnitudes and use_dora: true. A PiSSA model's file says
    init_lora_weights "pissa", as PEFT's does: PEFT and load_peft then compute the residual weights again
    from the base model they are given, which must be the original model (PEFT does so in float32, float16
    or bfloat16 only). convert_pissa_to_lora=adapter_state(model) taken right after add_lora writes a
    plain LoRA adapter instead, as PEFT's path_initial_model_for_weight_conversion does: the update
    scaling*B@A - scaling*B0@A0 as factors of rank 2r, [A; A0] and [B, -B0] with alpha doubled
    (times sqrt(2) for rsLoRA), which loads onto the original model in any dtype and beside other adapters.
    """
    from safetensors.torch import save_file  # installed with peft (requirements.txt)

    require_lora(model)
    state, settings = peft_state(model), peft_config(model)
    if convert_pissa_to_lora is not None:
        state, settings = _pissa_as_lora(model, convert_pissa_to_lora, state, settings)
    directory = Path(directory)
    with atomic_path(directory / PEFT_WEIGHTS) as tmp:
        save_file(state, tmp, metadata={"format": "pt"})
    with atomic_path(directory / PEFT_CONFIG) as tmp:
        Path(tmp).write_text(json.dumps(settings, indent=2) + "\n")
    return directory


def _pissa_as_lora(model, initial, state, settings):
    """PEFT's PiSSA-to-LoRA conversion of (state, settings): factors [A; A0] and [B, -B0] (notebook 12)."""
    config = model.lora_config
    if config.init != "pissa" or config.use_dora:
        raise ValueError("convert_pissa_to_lora is for a model made with init='pissa' and use_dora=False "
                         f"(this one has init={config.init!r}, use_dora={config.use_dora}): save it without it")
    state = dict(state)
    for name, lora in lora_layers(model):
        start = {factor: initial.get(f"{name}.{factor}") for factor in ("lora_A", "lora_B")}
        if any(not isinstance(tensor, torch.Tensor) or tensor.shape != getattr(lora, factor).shape
               for factor, tensor in start.items()):
            raise ValueError(f"convert_pissa_to_lora has no initial A and B shaped like {name}'s: pass "
                             "adapter_state(model) taken right after add_lora(..., init='pissa')")
        factor_A, factor_B = _peft_key(name, lora, "A"), _peft_key(name, lora, "B")
        state[factor_A] = torch.cat([state[factor_A], start["lora_A"].to(state[factor_A])], dim=0).contiguous()
        state[factor_B] = torch.cat([state[factor_B], -start["lora_B"].to(state[factor_B])], dim=1).contiguous()
    # Rank 2r with the same scaling: alpha / r = 2 alpha / 2r, and alpha / sqrt(r) = sqrt(2) alpha / sqrt(2r).
    settings = {**settings, "r": 2 * settings["r"], "init_lora_weights": True,
                "lora_alpha": settings["lora_alpha"] * (math.sqrt(2) if config.rslora else 2),
                "rank_pattern": {name: 2 * rank for name, rank in settings["rank_pattern"].items()}}
    return state, settings


def _read_peft(directory):
    """(settings, tensors) from a PEFT adapter directory, or a ValueError that says what is wrong."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    missing = [name for name in (PEFT_CONFIG, PEFT_WEIGHTS) if not (directory / name).is_file()]
    if missing:
        raise ValueError(f"{directory} is not a PEFT adapter directory: {missing} missing (save one with "
                         "lorautil.save_peft(model, directory) or PEFT's model.save_pretrained(directory))")
    try:
        settings = json.loads((directory / PEFT_CONFIG).read_text())
        tensors = load_file(directory / PEFT_WEIGHTS)
    except (json.JSONDecodeError, SafetensorError, OSError) as error:
        raise ValueError(f"{directory} holds a corrupt PEFT adapter ({error}); save it again") from error
    if settings.get("peft_type") != "LORA":
        raise ValueError(f"{directory} holds a {settings.get('peft_type')!r} adapter; load_peft reads LoRA only")
    odd = {key: settings[key] for key, plain in PEFT_UNSUPPORTED.items()
           if settings.get(key, plain) not in (plain, None)}
    init = settings.get("init_lora_weights", True)
    if isinstance(init, str) and init.lower().startswith(PEFT_BASE_CHANGING_INITS):
        odd["init_lora_weights"] = init
    if odd:
        raise ValueError(f"{directory} uses PEFT options lorautil does not implement: {odd}; load it with "
                         "peft.PeftModel.from_pretrained instead")
    return settings, tensors


def _peft_layers(tensors):
    """{layer name: rank} from the LoRA keys of a PEFT file, and the other tensors by their model name."""
    ranks, others = {}, {}
    for key, tensor in tensors.items():
        name = key.removeprefix(PEFT_PREFIX)
        for marker in (".lora_A.weight", ".lora_embedding_A"):
            if name.endswith(marker):
                ranks[name.removesuffix(marker)] = tensor.shape[0]
                break
        else:
            if ".lora_" not in name:  # biases (bias="lora_only" or "all") and modules_to_save
                others[name.replace(".base_layer.", ".")] = tensor
    return ranks, others


def load_peft(base_model, directory, method="wrapper"):
    """Add the LoRA adapter that PEFT (or save_peft) wrote in `directory` to `base_model`; returns it (notebook 11).

    The layers and their ranks come from the file's keys. Tensors the adapter also saved for the base
    model (biases with bias="lora_only" or "all", whole modules with modules_to_save) replace the
    model's own, so `base_model` computes what PEFT's model computes.

    Notebook 12: a DoRA adapter (use_dora) loads with its magnitudes, for Linear layers. A PiSSA adapter
    (init_lora_weights "pissa") first replaces the target weights by their residuals, as PEFT does, so
    `base_model` must be the original model; the SVD runs in float64 for a float64 model (PEFT refuses those).
    """
    settings, tensors = _read_peft(directory)
    if has_lora(base_model):
        raise RuntimeError("this model already has LoRA adapters: merge_lora() or remove_lora() them first")
    ranks, others = _peft_layers(tensors)
    r = int(settings["r"])
    parameters = dict(base_model.named_parameters())
    unknown = sorted(set(others) - set(parameters))
    if not ranks or unknown:
        raise ValueError(f"{directory} does not fit this model: " + (
            f"it names {unknown}, which the model does not have" if unknown else "it holds no LoRA tensors"))
    use_dora = bool(settings.get("use_dora", False))
    _check_magnitudes(directory, tensors, ranks, use_dora)
    config = LoraConfig(r, float(settings["lora_alpha"]), method, [], settings.get("bias", "none") != "none",
                        init="pissa" if settings.get("init_lora_weights") == "pissa" else "kaiming",
                        rslora=settings.get("use_rslora", False),
                        rank_pattern={name: rank for name, rank in ranks.items() if rank != r}, use_dora=use_dora)
    try:
        config.target_modules = resolve_targets(base_model, list(ranks))
    except (ValueError, TypeError) as error:
        raise ValueError(f"{directory} does not fit this model: {error}") from error
    # PiSSA replaces the target weights by residuals: keep the originals to put back if the file does not fit.
    originals = {name: base_model.get_submodule(name).weight.detach().clone()
                 for name in config.target_modules} if config.init == "pissa" else {}
    try:
        attach_lora(base_model, config, ranks)  # at the file's ranks, even one above a layer's smallest side
    except ValueError as error:  # DoRA or PiSSA on a layer other than Linear; PiSSA above a layer's rank
        raise ValueError(f"{directory} cannot be loaded here: {error}") from error
    layers = dict(lora_layers(base_model))
    try:  # check every shape before copying anything, so a misfit leaves the model as it was
        for key, tensor in tensors.items():
            name = key.removeprefix(PEFT_PREFIX)
            target = _peft_target(layers, parameters, name)
            if target is not None and target.shape != tensor.shape:
                raise ValueError(f"{directory} does not fit this model: {key} has shape {tuple(tensor.shape)}, "
                                 f"the model expects {tuple(target.shape)}")
    except ValueError:
        remove_lora(base_model)
        with torch.no_grad():
            for name, weight in originals.items():
                base_model.get_submodule(name).weight.copy_(weight)
        raise
    with torch.no_grad():
        for key, tensor in tensors.items():
            name = key.removeprefix(PEFT_PREFIX)
            target = _peft_target(layers, parameters, name)
            if target is not None:
                target.copy_(tensor)
    return base_model


def _check_magnitudes(directory, tensors, ranks, use_dora):
    """Raise ValueError unless the file holds DoRA magnitudes for exactly its layers if use_dora (notebook 12)."""
    suffix = f".{PEFT_MAGNITUDE}"
    magnitudes = {key.removeprefix(PEFT_PREFIX).removesuffix(suffix) for key in tensors if key.endswith(suffix)}
    if use_dora and magnitudes != set(ranks):
        raise ValueError(f"{directory} sets use_dora but holds no {PEFT_MAGNITUDE} for "
                         f"{sorted(set(ranks) - magnitudes) or sorted(magnitudes - set(ranks))}; save it again")
    if not use_dora and magnitudes:
        raise ValueError(f"{directory} holds {PEFT_MAGNITUDE} tensors for {sorted(magnitudes)} but its "
                         "adapter_config.json does not set use_dora; save it again")


def _peft_target(layers, parameters, name):
    """The model tensor a PEFT key (without its prefix) loads into, or None for a key it has no use for."""
    for marker, factor in ((".lora_A.weight", "lora_A"), (".lora_B.weight", "lora_B"),
                           (".lora_embedding_A", "lora_A"), (".lora_embedding_B", "lora_B"),
                           (f".{PEFT_MAGNITUDE}", "lora_magnitude_vector")):
        if name.endswith(marker):
            return getattr(layers[name.removesuffix(marker)], factor)
    return parameters.get(name.replace(".base_layer.", "."))
