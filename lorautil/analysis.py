"""Looking inside a fine-tune's update ΔW: per-layer updates, subspace similarity, amplification
and storage (notebook 08)."""
import copy

import torch
from torch import nn

from .lora import base_layer, lora_layers


@torch.no_grad()
def delta_weights(base, tuned):
    """{name: ΔW = W_tuned - W_base} for each nn.Linear of `base`; LoRA layers give scaling·B@A (notebook 08)."""
    loras = dict(lora_layers(tuned))
    deltas = {}
    for name, layer in base.named_modules():
        if not isinstance(layer, nn.Linear):
            continue
        if name in loras:  # exact, and right whether the adapter is merged, unmerged or parametrized
            deltas[name] = loras[name].delta_weight().detach().clone()
        else:
            deltas[name] = (base_layer(tuned.get_submodule(name)).weight - layer.weight).detach()
    return deltas


def update_norm(base, tuned):
    """‖ΔW‖_F of all Linear layers' updates together, for LoRA and full fine-tuning alike (notebook 05)."""
    return torch.sqrt(sum((delta.double() ** 2).sum() for delta in delta_weights(base, tuned).values())).item()


@torch.no_grad()
def with_weights(model, weights):
    """A copy of `model` whose named Linear layers get the given weights, e.g. W_base + ΔW_k (notebook 08)."""
    model = copy.deepcopy(model)
    for name, weight in weights.items():
        base_layer(model.get_submodule(name)).weight.copy_(weight)
    return model


def singular_directions(matrix, r):
    """(U_r, V_r): the top-r left (d, r) and right (k, r) singular vectors of a d×k `matrix` (notebook 08)."""
    if not 1 <= r <= min(matrix.shape):
        raise ValueError(f"r must be between 1 and {min(matrix.shape)} for a {tuple(matrix.shape)} matrix, got {r}")
    U, _, Vh = torch.linalg.svd(matrix.detach().double(), full_matrices=False)
    return U[:, :r], Vh[:r].T


def subspace_similarity(A1, A2, i, j):
    """Hu et al.'s φ = ‖V1_iᵀ V2_j‖²_F / min(i, j), V: top right-singular vectors of A (r, in) (notebook 08)."""
    V1, V2 = singular_directions(A1, i)[1], singular_directions(A2, j)[1]
    return ((V1.T @ V2).square().sum() / min(i, j)).item()


def subspace_similarity_grid(A1, A2, max_i, max_j):
    """φ(A1, A2, i, j) for all i <= max_i, j <= max_j at once: a (max_i, max_j) tensor (notebook 08)."""
    V1, V2 = singular_directions(A1, max_i)[1], singular_directions(A2, max_j)[1]
    overlap = (V1.T @ V2).square().cumsum(0).cumsum(1)  # entry (i-1, j-1) is ‖V1_iᵀ V2_j‖²_F
    i = torch.arange(1, max_i + 1, dtype=overlap.dtype)[:, None]
    j = torch.arange(1, max_j + 1, dtype=overlap.dtype)[None, :]
    return overlap / torch.minimum(i, j)


def random_orthonormal(n, r, generator=None):
    """An n×r matrix whose orthonormal columns span a random r-dimensional subspace (notebook 08)."""
    Q, _ = torch.linalg.qr(torch.randn(n, r, generator=generator, dtype=torch.float64))
    return Q


def projection_norm(W, U, V):
    """‖Uᵀ W V‖_F: how much of W acts between the column directions V and the row directions U (notebook 08)."""
    return torch.linalg.matrix_norm(U.T.double() @ W.detach().double() @ V.double()).item()


def amplification(W, delta, r):
    """Hu et al.'s Table 7 factor ‖ΔW‖_F / ‖U_rᵀ W V_r‖_F, with U_r, V_r ΔW's top-r directions (notebook 08)."""
    U, V = singular_directions(delta, r)
    return torch.linalg.matrix_norm(delta.detach().double()).item() / projection_norm(W, U, V)


def tensor_bytes(tensors):
    """Bytes the values of `tensors` take in memory: numel × element size, summed (notebook 08)."""
    return sum(t.numel() * t.element_size() for t in tensors)
