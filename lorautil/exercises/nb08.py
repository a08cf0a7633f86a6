"""Checks for the exercises of notebook 08 (inside the update)."""
import torch

from ..analysis import amplification, delta_weights, subspace_similarity
from ..linalg import energy_rank
from . import close, exercise

A1 = torch.tensor([[3.0, 0, 0], [0, 1, 0]])
A2 = torch.tensor([[0.0, 2, 0], [0, 0, 1]])
LAYERS = ("linear1", "linear2", "linear3")


@exercise("08.1",
          "φ compares right-singular vectors, the rows of Vh: find them for A₁ and A₂ in order of their singular "
          "values, then sum the squared cosines between the top i of one and the top j of the other.",
          "A₁'s directions are e₁ (σ = 3) then e₂; A₂'s are e₂ (σ = 2) then e₃. Divide the sum of squared cosines "
          "by min(i, j).")
def phi_by_hand(answer):
    """(φ(A₁, A₂, 1, 1), φ(A₁, A₂, 2, 2)) for the two 2×3 matrices of the exercise."""
    phi_11, phi_22 = answer
    for name, value, (i, j) in [("φ(1, 1)", phi_11, (1, 1)), ("φ(2, 2)", phi_22, (2, 2))]:
        if not close(value, subspace_similarity(A1, A2, i, j), rtol=0.0, atol=1e-6):
            return f"{name} is not {value}"
    return True


@exercise("08.3",
          "energy_rank(σ, fraction) gives the smallest k whose top k singular values hold that fraction of Σσ².",
          "For each layer take σ = torch.linalg.svdvals(full_delta[name]) and call energy_rank(σ, f) for "
          "f = 0.5, 0.9 and 0.99.")
def energy_ranks(answer, full_delta):
    """{layer: [rank for 50%, 90%, 99% of the energy]} of the full fine-tune's ΔW."""
    if set(answer) != set(LAYERS):
        return "give a dict with a list of three ranks for each of linear1, linear2, linear3"
    for name in LAYERS:
        sigma = torch.linalg.svdvals(full_delta[name])
        expected = [energy_rank(sigma, fraction) for fraction in (0.5, 0.9, 0.99)]
        if list(answer[name]) != expected:
            return f"{name}: {list(answer[name])} are not the ranks for 50%, 90% and 99% of the energy"
    return True


@exercise("08.5",
          "Section 4's amplification(W, ΔW, r) works for any layer: take linear2's W and its ΔW from both fine-tunes.",
          "W = base_weight['linear2']; LoRA's ΔW is delta_weights(base, lora_models[4])['linear2'], the full one "
          "full_delta['linear2']; r = 4.")
def amplification_linear2(answer, base, lora_model, full_delta):
    """{"LoRA r=4": factor, "full fine-tune": factor} on linear2, r = 4."""
    if set(answer) != {"LoRA r=4", "full fine-tune"}:
        return 'give a dict with the keys "LoRA r=4" and "full fine-tune"'
    W = base.linear2.weight.detach().cpu()
    deltas = {"LoRA r=4": delta_weights(base, lora_model)["linear2"].cpu(), "full fine-tune": full_delta["linear2"]}
    for source, delta in deltas.items():
        if not close(answer[source], amplification(W, delta, 4), rtol=2e-3):
            return f"{source}: {float(answer[source]):.3f} is not linear2's amplification factor at r = 4"
    return True
