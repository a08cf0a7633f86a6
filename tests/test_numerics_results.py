"""Identity checks in float64 (notebook 03) and the helpers that average runs over seeds (notebook 05)."""
import pytest
import torch

import lorautil


def test_assert_identity_accepts_rounding_and_reports_it():
    expected = torch.tensor([1.0, -200.0, 3.0], dtype=torch.float64)
    difference, tolerance = lorautil.assert_identity(expected + 1e-13, expected)
    assert 0 < difference < 2e-13 and tolerance == pytest.approx(200 * lorautil.IDENTITY_RTOL)


def test_assert_identity_rejects_a_real_difference():
    expected = torch.ones(3, dtype=torch.float64)
    with pytest.raises(AssertionError, match="not the same up to rounding"):
        lorautil.assert_identity(expected * (1 + 1e-6), expected)


def test_assert_identity_refuses_float32_and_mismatched_shapes():
    with pytest.raises(TypeError, match="check identities in float64"):
        lorautil.assert_identity(torch.ones(3), torch.ones(3))
    with pytest.raises(ValueError, match="shapes differ"):
        lorautil.assert_identity(torch.ones(3, dtype=torch.float64), torch.ones(4, dtype=torch.float64))


def test_float64_copy_leaves_the_original_in_float32(small_model):
    copy = lorautil.float64_copy(small_model)
    assert lorautil.model_dtype(copy) == torch.float64 and lorautil.model_dtype(small_model) == torch.float32
    x = torch.randn(5, 784)
    lorautil.assert_identity(copy(x.double()), small_model.double()(x.double()))


def test_trainable_copy_seeds_before_adding_lora_and_leaves_the_base_frozen_as_it_was(small_model):
    small_model.requires_grad_(False)
    full = lorautil.trainable_copy(small_model, r=None, seed=3)
    assert all(p.requires_grad for p in full.parameters())
    assert not any(p.requires_grad for p in small_model.parameters())
    first, second = (lorautil.trainable_copy(small_model, r=2, seed=3, init="standard_normal") for _ in range(2))
    assert torch.equal(first.linear1.parametrizations.weight[0].lora_A,
                       second.linear1.parametrizations.weight[0].lora_A)
    torch.manual_seed(3)
    assert torch.equal(first.linear1.parametrizations.weight[0].lora_A, torch.randn(2, 784))


def test_accuracy_by_group_splits_finetuned_and_other_digits():
    confusion = torch.diag(torch.full((10,), 10))
    confusion[2, 3], confusion[2, 2] = 5, 5  # half of the 2s wrong
    result = lorautil.EvalResult(95 / 100, None, None, confusion, None)
    groups = result.by_group()
    assert groups == {"fine": pytest.approx(45 / 50), "other": 1.0, "overall": 0.95}


ROWS = [{"method": "r=1", "seed": 0, "acc": 0.5}, {"method": "r=2", "seed": 0, "acc": 0.7},
        {"method": "r=1", "seed": 1, "acc": 0.7}]


def test_select_group_and_average_rows():
    assert lorautil.select(ROWS, method="r=1", seed=1) == [ROWS[2]]
    assert list(lorautil.group_by(ROWS, "method")) == ["r=1", "r=2"]
    mean, std = lorautil.mean_std(lorautil.select(ROWS, method="r=1"), "acc")
    assert mean == pytest.approx(0.6) and std == pytest.approx(0.1414213562)
    assert lorautil.mean_std(lorautil.select(ROWS, method="r=2"), "acc") == (0.7, 0.0)
    with pytest.raises(ValueError, match="no rows"):
        lorautil.mean_std(lorautil.select(ROWS, method="r=9"), "acc")


def test_best_by_picks_the_setting_with_the_best_mean_over_seeds():
    rows = [{"lr": 1e-3, "val": 0.90}, {"lr": 1e-3, "val": 0.70},   # mean 0.80, one lucky seed
            {"lr": 3e-3, "val": 0.84}, {"lr": 3e-3, "val": 0.82}]   # mean 0.83
    best, mean = lorautil.best_by(rows, "lr", "val")
    assert best == 3e-3 and mean == pytest.approx(0.83)
    with pytest.raises(ValueError, match="no rows"):
        lorautil.best_by([], "lr", "val")


def test_train_only_trains_just_the_named_layers(small_model):
    head = lorautil.trainable_copy(small_model, r=None, train_only=["linear3"])
    trainable = {name for name, p in head.named_parameters() if p.requires_grad}
    assert trainable == {"linear3.weight", "linear3.bias"}
    assert lorautil.count_parameters(head, trainable_only=True) == 128 * 10 + 10
    with pytest.raises(ValueError, match="choose from"):
        lorautil.trainable_copy(small_model, train_only=["linear4"])
    with pytest.raises(ValueError, match="needs r=None"):
        lorautil.trainable_copy(small_model, r=2, train_only=["linear3"])


def test_finetune_of_the_last_layer_leaves_the_others_unchanged(small_model, train_set):
    steps = []
    tuned, losses = lorautil.finetune(small_model, train_set, steps=3, train_only="linear3",
                                      on_step=lambda step, loss: steps.append(step))
    assert steps == [1, 2, 3] and len(losses) == 3
    assert torch.equal(tuned.linear1.weight, small_model.linear1.weight)
    assert torch.equal(tuned.linear2.bias, small_model.linear2.bias)
    assert not torch.equal(tuned.linear3.weight, small_model.linear3.weight)


def test_clearly_above_needs_a_gap_larger_than_both_spreads():
    steady, noisy = [0.90, 0.91, 0.92], [0.80, 0.95, 0.65]
    assert lorautil.clearly_above(steady, [0.70, 0.71, 0.72])
    assert not lorautil.clearly_above(steady, noisy)  # mean 0.80, but a spread of 0.15
    assert not lorautil.clearly_above([0.5], [0.5])
    rows = [{"acc": v} for v in steady]
    assert lorautil.clearly_above(rows, [{"acc": 0.5}], "acc")


def test_expected_lora_parameters_is_the_capped_formula_add_lora_trains(small_model):
    for r, targets in [(1, None), (16, None), (256, None), (3, ["linear1"]), (6, ["linear2", "linear3"])]:
        expected = lorautil.expected_lora_parameters(small_model, r, targets)
        adapted = lorautil.trainable_copy(small_model, r, cap_rank=True, target_modules=targets)
        assert lorautil.count_parameters(adapted, trainable_only=True) == expected
    assert lorautil.expected_lora_parameters(small_model, 2) == 3_124  # the documents' count
    with pytest.raises(ValueError, match="unknown target"):
        lorautil.expected_lora_parameters(small_model, 2, ["linear9"])


def test_update_norm_is_the_frobenius_norm_of_every_layer_change(small_model):
    tuned = lorautil.float64_copy(small_model)
    with torch.no_grad():
        tuned.linear1.weight += 3.0 / (256 * 784) ** 0.5   # ‖ΔW1‖ = 3
        tuned.linear3.weight[0, 0] += 4.0                   # ‖ΔW3‖ = 4
    assert abs(lorautil.update_norm(lorautil.float64_copy(small_model), tuned) - 5.0) < 1e-9
    assert lorautil.update_norm(small_model, small_model) == 0.0
