"""Known answers for lorautil.analysis (notebook 08)."""
import copy

import pytest
import torch

import lorautil
from lorautil import analysis


def test_delta_weights_of_a_full_finetune_is_the_weight_difference(small_model, assert_identity):
    small_model.double()
    tuned = copy.deepcopy(small_model)
    change = torch.arange(128 * 256, dtype=torch.float64).reshape(128, 256) / 1000
    with torch.no_grad():
        tuned.linear2.weight += change
        tuned.linear3.bias += 1.0  # biases are not weights: they must not show up in ΔW
    deltas = analysis.delta_weights(small_model, tuned)
    assert list(deltas) == list(lorautil.LINEAR_LAYERS)
    assert_identity(deltas["linear2"], change)
    assert not deltas["linear1"].any() and deltas["linear1"].shape == (256, 784)
    assert not deltas["linear3"].any() and deltas["linear3"].shape == (10, 128)


@pytest.mark.parametrize("method", ["parametrization", "wrapper"])
def test_delta_weights_of_a_lora_model_is_scaling_times_b_at_a(small_model, method, assert_identity):
    small_model.double()
    tuned = lorautil.add_lora(copy.deepcopy(small_model), r=2, alpha=4.0, method=method,
                              target_modules=["linear1", "linear3"])
    lora = dict(lorautil.lora_layers(tuned))["linear1"]
    with torch.no_grad():
        lora.lora_B.copy_(torch.randn(256, 2, dtype=torch.float64))
    deltas = analysis.delta_weights(small_model, tuned)
    expected = 2.0 * (lora.lora_B @ lora.lora_A)  # scaling = alpha / r = 2
    assert_identity(deltas["linear1"], expected)
    assert torch.linalg.matrix_rank(deltas["linear1"]).item() == 2
    assert not deltas["linear2"].any()  # not adapted
    assert not deltas["linear3"].any()  # adapted, but B is still zero


def test_with_weights_changes_a_copy_only(small_model):
    before = small_model.linear1.weight.detach().clone()
    new = torch.ones(256, 784)
    changed = analysis.with_weights(small_model, {"linear1": new})
    assert torch.equal(changed.linear1.weight, new)
    assert torch.equal(small_model.linear1.weight, before)
    assert torch.equal(changed.linear2.weight, small_model.linear2.weight)


def test_subspace_similarity_identical_rotated_and_orthogonal():
    torch.manual_seed(0)
    A = torch.randn(4, 20)
    mix = torch.randn(4, 4)  # an invertible mix of the rows spans the same row space
    assert analysis.subspace_similarity(A, A, 4, 4) == pytest.approx(1.0, abs=1e-9)
    assert analysis.subspace_similarity(A, mix @ A, 4, 4) == pytest.approx(1.0, abs=1e-9)
    eye = torch.eye(6)
    assert analysis.subspace_similarity(eye[:3], eye[3:], 3, 3) == pytest.approx(0.0, abs=1e-12)


def test_subspace_similarity_known_partial_overlap():
    # Top directions: e1 then e2 for A1, e2 then e3 for A2 (distinct singular values fix the order).
    A1 = torch.tensor([[3.0, 0, 0], [0, 1, 0]])
    A2 = torch.tensor([[0.0, 2, 0], [0, 0, 1]])
    assert analysis.subspace_similarity(A1, A2, 1, 1) == pytest.approx(0.0, abs=1e-12)
    assert analysis.subspace_similarity(A1, A2, 2, 2) == pytest.approx(0.5)
    assert analysis.subspace_similarity(A1, A2, 2, 1) == pytest.approx(1.0)  # e2 lies in span(e1, e2)


def test_subspace_similarity_grid_matches_the_single_values():
    torch.manual_seed(1)
    A1, A2 = torch.randn(3, 10), torch.randn(5, 10)
    grid = analysis.subspace_similarity_grid(A1, A2, 3, 5)
    assert grid.shape == (3, 5)
    for i in range(1, 4):
        for j in range(1, 6):
            assert grid[i - 1, j - 1].item() == pytest.approx(analysis.subspace_similarity(A1, A2, i, j), abs=1e-12)
    assert grid.min() >= 0 and grid.max() <= 1 + 1e-12
    A3 = torch.cat([A1, torch.randn(2, 10)])  # contains A1's rows: A1's row space lies inside A3's
    assert analysis.subspace_similarity_grid(A1, A3, 3, 5)[2, 4].item() == pytest.approx(1.0)


def test_subspace_similarity_rejects_more_directions_than_exist():
    with pytest.raises(ValueError, match="between 1 and 3"):
        analysis.subspace_similarity(torch.randn(3, 10), torch.randn(5, 10), 4, 2)


def test_amplification_of_a_hand_built_update():
    W = torch.diag(torch.tensor([10.0, 1.0, 0.5]))
    delta = torch.zeros(3, 3)
    delta[2, 2] = 2.0  # rank 1, along the direction where W is weakest
    # U1 = V1 = e3 (up to sign): U1ᵀ W V1 = 0.5, and ‖ΔW‖_F = 2, so the factor is 4.
    U, V = analysis.singular_directions(delta, 1)
    assert analysis.projection_norm(W, U, V) == pytest.approx(0.5)
    assert analysis.amplification(W, delta, 1) == pytest.approx(4.0)
    # W's own top direction holds 10: no 1-dim projection of W can hold more.
    assert analysis.projection_norm(W, *analysis.singular_directions(W, 1)) == pytest.approx(10.0)


def test_random_orthonormal_has_orthonormal_columns():
    Q = analysis.random_orthonormal(50, 7, torch.Generator().manual_seed(0))
    assert Q.shape == (50, 7)
    assert torch.allclose(Q.T @ Q, torch.eye(7, dtype=Q.dtype), atol=1e-12)


def test_tensor_bytes_of_digitsnet_and_of_a_rank_2_adapter(small_model):
    assert analysis.tensor_bytes(small_model.state_dict().values()) == 235_146 * 4
    adapted = lorautil.add_lora(copy.deepcopy(small_model), r=2)
    assert analysis.tensor_bytes(lorautil.adapter_state(adapted).values()) == 3_124 * 4
    assert analysis.tensor_bytes([torch.zeros(3, dtype=torch.float64)]) == 24
