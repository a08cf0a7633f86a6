"""Rank, parameter counts and the truncated SVD: the linear algebra behind LoRA (notebook 01)."""
import torch


def lora_parameter_count(d, k, r):
    """Entries of a rank-r update B (d x r) @ A (r x k): (d + k) * r, against d * k in full (notebook 01)."""
    return (d + k) * r


def truncated_svd(matrix, k):
    """The best rank-k approximation of `matrix`: its top k singular triples (Eckart-Young-Mirsky) (notebook 01)."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    U, S, Vh = torch.linalg.svd(matrix, full_matrices=False)
    return (U[:, :k] * S[:k]) @ Vh[:k]


def approximation_errors(matrix):
    """(spectral, frobenius): ||A - A_k|| for k = 0..min(m, n), read off the singular values (notebook 01)."""
    s = torch.linalg.svdvals(matrix)
    zero = s.new_zeros(1)
    spectral = torch.cat([s, zero])  # ||A - A_k||_2 = sigma_(k+1), and 0 once k reaches the rank
    tail = s.square().flip(0).cumsum(0).flip(0)  # sum of sigma_i^2 for i > k, smallest terms added first
    return spectral, torch.cat([tail, zero]).sqrt()


def energy_fraction(singular_values):
    """Share of the sum of sigma^2 held by the k largest singular values, for k = 1..p (notebook 01)."""
    energy = torch.as_tensor(singular_values, dtype=torch.float64).sort(descending=True).values.square()
    return energy.cumsum(0) / energy.sum()


def energy_rank(singular_values, fraction=0.9):
    """Smallest k whose k largest singular values hold at least `fraction` of the sum of sigma^2 (notebook 01)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    kept = energy_fraction(singular_values)
    first = int(torch.searchsorted(kept, torch.tensor([fraction], dtype=kept.dtype)).item())
    return min(first + 1, len(kept))  # min(): rounding can leave the full sum a hair below 1.0
