"""LoRA+: one optimizer with a larger learning rate for B than for A (notebook 12)."""
import torch

from .model import lora_layers, require_lora


def loraplus_groups(model, lr, ratio=16.0, embedding_lr=1e-6):
    """Parameter groups as PEFT's create_loraplus_optimizer makes them (notebook 12).

    A at lr, B at ratio x lr (Hayou et al. 2024, arXiv 2402.12354). As in PEFT, trainable 1-D tensors
    (biases) join B's group and the factors of Embedding adapters get embedding_lr.
    """
    require_lora(model)
    if not ratio >= 1:
        raise ValueError(f"ratio is B's learning rate over A's and should be >= 1, got {ratio!r}")
    embedding = {id(factor) for _, lora in lora_layers(model) if lora.embedding
                 for factor in (lora.lora_A, lora.lora_B)}
    b_factors = {id(lora.lora_B) for _, lora in lora_layers(model)}
    groups = {"A": [], "B": [], "embedding": []}
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        if id(parameter) in embedding:
            groups["embedding"].append(parameter)
        elif id(parameter) in b_factors or parameter.ndim == 1:
            groups["B"].append(parameter)
        else:
            groups["A"].append(parameter)
    rates = {"A": lr, "B": lr * ratio, "embedding": embedding_lr}
    return [{"params": params, "lr": rates[name], "name": name} for name, params in groups.items() if params]


def loraplus_optimizer(model, lr, ratio=16.0, optimizer=torch.optim.Adam, embedding_lr=1e-6, **options):
    """An optimizer (Adam unless told) over `model`'s trainable parameters with B at ratio x lr (notebook 12)."""
    return optimizer(loraplus_groups(model, lr, ratio, embedding_lr), lr=lr, **options)
