"""What one training step keeps in memory, per component: what LoRA saves and what it does not (notebook 12)."""
import torch
from torch import nn

from .analysis import tensor_bytes


def _saved_bytes(tensors, exclude=()):
    """Bytes of `tensors`, each storage counted once (the largest view of it: a batch sliced from a data set
    counts as the batch, not the data set), leaving out storages in `exclude` (a set of data pointers)."""
    seen = {}
    for t in tensors:
        pointer = t.untyped_storage().data_ptr()
        if pointer not in exclude:
            seen[pointer] = max(seen.get(pointer, 0), t.numel() * t.element_size())
    return sum(seen.values())


def training_memory(model, images, labels, optimizer=None):
    """Bytes held during one training step of `model` on a batch, per component (notebook 12).

    "frozen weights": parameters that do not train, and buffers (an NF4 base's 4-bit indices and absmax);
    "trainable weights"; "gradients" (one per trainable weight); "optimizer state" (Adam: two moments per
    trainable weight); "activations": the tensors autograd saves in the forward pass for the backward
    pass, each storage counted once, weights left out. The step is taken: pass a copy of a model you keep.
    """
    params = list(model.parameters())
    weights = {p.untyped_storage().data_ptr() for p in params} | {b.untyped_storage().data_ptr()
                                                                   for b in model.buffers()}
    trainable = [p for p in params if p.requires_grad]
    if not trainable:
        raise ValueError("the model has no trainable parameters: add LoRA or unfreeze some first")
    optimizer = optimizer or torch.optim.Adam(trainable, lr=1e-3)
    saved = []

    def keep(tensor):
        saved.append(tensor)
        return tensor

    model.train()
    optimizer.zero_grad()
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
        loss = nn.functional.cross_entropy(model(images), labels)
    activations = _saved_bytes(saved, exclude=weights)
    loss.backward()
    optimizer.step()
    state = [t for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t) and t.dim() > 0]
    frozen = [p for p in params if not p.requires_grad] + list(model.buffers())
    return {
        "frozen weights": tensor_bytes(frozen),
        "trainable weights": tensor_bytes(trainable),
        "gradients": tensor_bytes(p.grad for p in trainable if p.grad is not None),
        "optimizer state": tensor_bytes(state),
        "activations": activations,
    }
