"""Known answers for lorautil.linalg (notebook 01)."""
import math

import pytest
import torch

from lorautil.linalg import approximation_errors, energy_fraction, energy_rank, lora_parameter_count, truncated_svd


def test_parameter_counts_match_the_documents():
    assert lora_parameter_count(300, 200, 4) == 2_000
    assert lora_parameter_count(300, 200, 8) == 4_000
    assert lora_parameter_count(700_000, 30_000, 1) == 730_000
    # DigitsNet at rank 2 on all three layers: the documents' 3,124 trainable parameters
    layers = [(256, 784), (128, 256), (10, 128)]
    assert sum(lora_parameter_count(d, k, 2) for d, k in layers) == 3_124


def test_truncated_svd_of_a_diagonal_matrix_keeps_the_largest_entries():
    A = torch.diag(torch.tensor([1.0, 5.0, 2.0, 3.0], dtype=torch.float64))
    expected = torch.diag(torch.tensor([0.0, 5.0, 0.0, 3.0], dtype=torch.float64))
    assert torch.allclose(truncated_svd(A, 2), expected, atol=1e-12)
    assert torch.allclose(truncated_svd(A, 0), torch.zeros_like(A))
    assert torch.allclose(truncated_svd(A, 4), A, atol=1e-12)


def test_truncated_svd_has_rank_k_and_recovers_a_low_rank_matrix():
    torch.manual_seed(0)
    A = torch.randn(9, 6, dtype=torch.float64)
    for k in range(7):
        assert torch.linalg.matrix_rank(truncated_svd(A, k)).item() == k
    low = torch.randn(9, 2, dtype=torch.float64) @ torch.randn(2, 6, dtype=torch.float64)
    assert torch.allclose(truncated_svd(low, 2), low, atol=1e-10)
    with pytest.raises(ValueError):
        truncated_svd(A, -1)


def test_approximation_errors_of_a_diagonal_matrix():
    spectral, frobenius = approximation_errors(torch.diag(torch.tensor([4.0, 3.0, 2.0, 1.0], dtype=torch.float64)))
    assert torch.allclose(spectral, torch.tensor([4.0, 3.0, 2.0, 1.0, 0.0], dtype=torch.float64))
    expected = torch.tensor([30.0, 14.0, 5.0, 1.0, 0.0], dtype=torch.float64).sqrt()
    assert torch.allclose(frobenius, expected)


def test_approximation_errors_equal_the_measured_errors():
    """Eckart-Young-Mirsky: ||A - A_k||_2 = sigma_(k+1) and ||A - A_k||_F = sqrt(sum_(i>k) sigma_i^2)."""
    torch.manual_seed(1)
    A = torch.randn(7, 5, dtype=torch.float64)
    spectral, frobenius = approximation_errors(A)
    assert len(spectral) == len(frobenius) == 6
    for k in range(6):
        residual = A - truncated_svd(A, k)
        assert math.isclose(torch.linalg.matrix_norm(residual, ord=2).item(), spectral[k].item(),
                            rel_tol=1e-9, abs_tol=1e-12)
        assert math.isclose(torch.linalg.matrix_norm(residual).item(), frobenius[k].item(),
                            rel_tol=1e-9, abs_tol=1e-12)
    assert math.isclose(frobenius[0].item(), torch.linalg.matrix_norm(A).item(), rel_tol=1e-12)


def test_energy_fraction_and_energy_rank_on_constructed_singular_values():
    values = torch.tensor([1.0, 3.0, 2.0])  # energies 9, 4, 1 once sorted: total 14
    assert torch.allclose(energy_fraction(values), torch.tensor([9 / 14, 13 / 14, 1.0], dtype=torch.float64))
    assert energy_rank(values, 0.5) == 1
    assert energy_rank(values, 9 / 14) == 1  # exactly reaching the share is enough
    assert energy_rank(values, 0.65) == 2
    assert energy_rank(values, 0.9) == 2
    assert energy_rank(values, 0.95) == 3
    assert energy_rank(values, 1.0) == 3
    assert energy_rank([10.0] + [1e-4] * 50, 0.999) == 1


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_energy_rank_rejects_a_fraction_outside_0_1(fraction):
    with pytest.raises(ValueError):
        energy_rank([1.0, 2.0], fraction)
