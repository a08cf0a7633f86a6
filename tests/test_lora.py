import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import lorautil
from lorautil import LoRALinear, LoRAParametrization

METHODS = ["parametrization", "wrapper"]


@pytest.fixture
def base():
    """DigitsNet in float64, so that identities hold to rounding on every CPU (see lorautil.numerics)."""
    torch.manual_seed(0)
    model = lorautil.DigitsNet().double()
    with torch.no_grad():  # a base whose outputs are not all clipped to zero
        for p in model.parameters():
            p.mul_(3)
    return model


@pytest.fixture
def x():
    return torch.randn(32, 784, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def adapted(base, method, seed=0, **options):
    torch.manual_seed(seed)
    return lorautil.add_lora(copy.deepcopy(base), 2, method=method, **options)


def randomise_adapters(model, seed=2):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, lora in lorautil.lora_layers(model):
            lora.lora_B.copy_(torch.randn(lora.lora_B.shape, generator=generator, dtype=lora.lora_B.dtype) * 0.1)
    return model


@pytest.mark.parametrize("method", METHODS)
def test_at_init_the_adapted_model_equals_the_base_bit_for_bit(base, x, method):
    model = adapted(base, method)
    assert torch.equal(model(x), base(x))


@pytest.mark.parametrize("method", METHODS)
def test_disabled_adapters_give_the_base_model_bit_for_bit(base, x, method):
    model = randomise_adapters(adapted(base, method))
    assert not torch.allclose(model(x), base(x))
    with lorautil.disable_lora(model):
        assert torch.equal(model(x), base(x))
    assert not torch.allclose(model(x), base(x))  # enabled again after the block
    with pytest.raises(KeyError):
        with lorautil.disable_lora(model):
            raise KeyError("inside")
    assert all(lora.enabled for _, lora in lorautil.lora_layers(model))


def test_both_methods_draw_the_same_init_and_give_the_same_outputs(base, x, assert_identity):
    by_parametrization = randomise_adapters(adapted(base, "parametrization"))
    by_wrapper = randomise_adapters(adapted(base, "wrapper"))
    for (_, a), (_, b) in zip(lorautil.lora_layers(by_parametrization), lorautil.lora_layers(by_wrapper), strict=True):
        assert torch.equal(a.lora_A, b.lora_A) and torch.equal(a.lora_B, b.lora_B)
        assert a.lora_A.shape[0] == 2 and a.lora_B.shape[1] == 2
    assert_identity(by_parametrization(x), by_wrapper(x))


@pytest.mark.parametrize("method", METHODS)
def test_merged_equals_unmerged_and_leaves_plain_linear_layers(base, x, method, assert_identity):
    model = randomise_adapters(adapted(base, method))
    expected = model(x).detach()
    merged = lorautil.merge_lora(model)
    assert_identity(merged(x), expected)
    for name in ("linear1", "linear2", "linear3"):
        layer = merged.get_submodule(name)
        assert type(layer) is nn.Linear and not parametrize.is_parametrized(layer)
    assert lorautil.count_parameters(merged) == 235_146
    assert not lorautil.has_lora(merged)


def test_wrapper_merge_then_unmerge_restores_the_weight(base, x, assert_identity):
    model = randomise_adapters(adapted(base, "wrapper"))
    layer = model.linear1
    original = layer.base.weight.detach().clone()
    unmerged_output = model(x).detach()
    layer.merge()
    assert layer.merged and not torch.equal(layer.base.weight, original)
    assert_identity(layer.base.weight, original + layer.delta_weight())
    layer.unmerge()
    assert_identity(layer.base.weight, original)
    assert_identity(model(x), unmerged_output)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("train_bias", [False, True])
def test_after_backward_only_adapters_and_requested_biases_have_gradients(base, x, method, train_bias):
    model = randomise_adapters(adapted(base, method, train_bias=train_bias))
    model(x).sum().backward()
    with_grad = {name for name, p in model.named_parameters() if p.grad is not None}
    expected = {name for name, p in model.named_parameters()
                if name.endswith(("lora_A", "lora_B")) or (train_bias and name.endswith("bias"))}
    assert with_grad == expected
    assert len(expected) == 6 + 3 * train_bias


@pytest.mark.parametrize("method", METHODS)
def test_trainable_counts_match_the_documents(base, method):
    assert lorautil.count_parameters(adapted(base, method), trainable_only=True) == 3_124
    assert lorautil.count_parameters(adapted(base, method, train_bias=True), trainable_only=True) == 3_518
    assert lorautil.trainable_summary(adapted(base, method)) == \
        "trainable params: 3,124 || all params: 238,270 || trainable%: 1.3111"


@pytest.mark.parametrize("method", METHODS)
def test_save_then_load_into_a_fresh_base_gives_the_same_outputs(base, x, method, tmp_path):
    model = randomise_adapters(adapted(base, method, train_bias=True))
    with torch.no_grad():
        model.linear2.bias.add_(1.0) if method == "parametrization" else model.linear2.base.bias.add_(1.0)
    path = lorautil.save_adapter(model, tmp_path / "adapter.pt")
    saved = torch.load(path, weights_only=True)
    assert set(saved["state"]) == {f"linear{i}.{k}" for i in (1, 2, 3) for k in ("lora_A", "lora_B", "bias")}
    assert saved["config"]["r"] == 2 and saved["config"]["method"] == method
    fresh = lorautil.load_adapter(copy.deepcopy(base), path)
    assert torch.equal(fresh(x), model(x))
    assert not list(tmp_path.glob("*.part"))


def test_loading_replaces_the_adapter_of_an_adapted_model(base, x, tmp_path):
    first = randomise_adapters(adapted(base, "wrapper"), seed=3)
    lorautil.save_adapter(first, tmp_path / "first.pt")
    second = randomise_adapters(adapted(base, "wrapper"), seed=4)
    assert not torch.allclose(second(x), first(x))
    lorautil.load_adapter(second, tmp_path / "first.pt")
    assert torch.equal(second(x), first(x))


@pytest.mark.parametrize("method", METHODS)
def test_remove_lora_gives_back_the_base_model(base, x, method):
    model = lorautil.remove_lora(randomise_adapters(adapted(base, method)))
    assert torch.equal(model(x), base(x))
    assert not lorautil.has_lora(model)
    assert lorautil.count_parameters(model) == 235_146


def test_scaling_is_alpha_over_r_or_over_sqrt_r_for_rslora():
    assert LoRAParametrization(8, 4, r=4, alpha=8).scaling == 2.0
    assert lorautil.lora_scaling(16, 8, rslora=True) == 2.0


def test_the_default_init_is_peft_kaiming_uniform_and_b_is_zero():
    torch.manual_seed(0)
    kaiming = LoRALinear(nn.Linear(100, 50), r=4)
    assert kaiming.lora_A.abs().max() <= 1 / 10 and kaiming.lora_A.abs().max() > 0.09  # U(-1/sqrt(in), ...)
    assert not kaiming.lora_B.any()


@pytest.mark.parametrize("init, std", [("gaussian", 1 / 8), ("standard_normal", 1.0)])
def test_gaussian_inits_draw_a_with_their_standard_deviation(init, std):
    torch.manual_seed(0)
    lora = LoRAParametrization(784, 256, r=8, init=init)
    assert lora.lora_A.std().item() == pytest.approx(std, rel=0.02)  # 6,272 draws: 2% is about 2 standard errors
    assert abs(lora.lora_A.mean().item()) < 0.05 * std and not lora.lora_B.any()


def test_cap_rank_lowers_r_only_where_a_layer_is_too_small(base):
    capped = lorautil.add_lora(base, 64, cap_rank=True)
    assert {name: lora.r for name, lora in lorautil.lora_layers(capped)} == \
        {"linear1": 64, "linear2": 64, "linear3": 10}


def test_target_modules_adapts_only_the_named_layer(base):
    only_one = lorautil.add_lora(base, 4, target_modules="linear2")
    assert [name for name, _ in lorautil.lora_layers(only_one)] == ["linear2"]
    assert lorautil.count_parameters(only_one, trainable_only=True) == (256 + 128) * 4


@pytest.mark.parametrize("r", [0, -1, 2.5, True])
def test_bad_rank_is_refused(base, r):
    with pytest.raises(ValueError, match="r must be a whole number"):
        lorautil.add_lora(base, r)


@pytest.mark.parametrize("options, error, message", [
    (dict(r=64), ValueError, r"r=64 is larger than linear3.*cap_rank=True"),
    (dict(r=2, alpha=0), ValueError, "alpha must be > 0"),
    (dict(r=2, target_modules=["linear1", "linear4"]), ValueError, r"unknown target module 'linear4'.*linear1"),
    (dict(r=2, target_modules=["relu"]), TypeError, "is a ReLU: LoRA here adapts nn.Linear, nn.Conv2d"),
    (dict(r=2, target_modules=["linear1", "linear1"]), ValueError, "name each layer once"),
    (dict(r=2, method="adapter"), ValueError, "method must be"),
    (dict(r=2, init="uniform"), ValueError, "init must be"),
])
def test_a_bad_request_is_refused_and_changes_nothing(base, options, error, message):
    with pytest.raises(error, match=message):
        lorautil.add_lora(base, **options)
    assert not lorautil.has_lora(base) and all(p.requires_grad for p in base.parameters())


def test_adding_twice_is_refused(base):
    twice = lorautil.add_lora(base, 2)
    with pytest.raises(RuntimeError, match="already has LoRA"):
        lorautil.add_lora(twice, 2)


@pytest.mark.parametrize("action", [lorautil.merge_lora, lorautil.remove_lora, lorautil.adapter_state])
def test_lora_actions_on_a_model_without_adapters_say_what_to_do(base, action):
    with pytest.raises(RuntimeError, match=r"no LoRA adapters: call add_lora"):
        action(base)


class Narrow(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear1, self.linear2, self.linear3 = nn.Linear(784, 64), nn.Linear(64, 32), nn.Linear(32, 10)

    def forward(self, x):
        return self.linear3(self.linear2(self.linear1(x)))


def test_an_adapter_that_does_not_fit_is_refused_and_leaves_the_model_unchanged(base, tmp_path):
    path = lorautil.save_adapter(adapted(base, "wrapper"), tmp_path / "a.pt")
    narrow = Narrow()
    with pytest.raises(ValueError, match="does not fit this model"):
        lorautil.load_adapter(narrow, path)
    assert not lorautil.has_lora(narrow)
    other_targets = lorautil.add_lora(copy.deepcopy(base), 2, method="wrapper", target_modules=["linear1"])
    with pytest.raises(ValueError, match="was made for targets"):
        lorautil.load_adapter(other_targets, path)


def test_a_file_that_is_not_an_adapter_is_refused(base, tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="is not an adapter saved by lorautil.save_adapter"):
        lorautil.load_adapter(base, tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="is not an adapter saved by lorautil.save_adapter"):
        lorautil.load_adapter(base, tmp_path / "other.pt")
    assert not lorautil.has_lora(base)


def test_disabling_merged_wrappers_is_refused(base):
    model = adapted(base, "wrapper")
    model.linear1.merge()
    with pytest.raises(RuntimeError, match="unmerge"):
        with lorautil.disable_lora(model):
            pass


def test_trained_adapters_agree_across_methods(base, train_set, assert_identity):
    data_seeded = []
    for method in METHODS:
        model = adapted(base, method)
        torch.manual_seed(7)
        lorautil.train(model, lorautil.batches(train_set, 10, True, digits=[2, 3]), limit=20, progress=False)
        data_seeded.append(model)
    x = train_set.images[:100].double()
    assert_identity(data_seeded[0](x), data_seeded[1](x))


@pytest.mark.parametrize("method", METHODS)
def test_merging_or_removing_on_a_copy_leaves_the_original_working(base, x, method):
    original = randomise_adapters(adapted(base, method))
    expected = original(x).detach()
    lorautil.merge_lora(copy.deepcopy(original))
    lorautil.remove_lora(copy.deepcopy(original))
    assert torch.equal(original(x), expected)


def test_merging_while_disabled_is_refused(base):
    model = adapted(base, "parametrization")
    with lorautil.disable_lora(model):
        with pytest.raises(RuntimeError, match="disabled"):
            lorautil.merge_lora(model)
    assert lorautil.has_lora(model)


def test_an_adapter_with_another_alpha_is_refused(base, tmp_path):
    path = lorautil.save_adapter(randomise_adapters(adapted(base, "wrapper", alpha=4.0)), tmp_path / "a.pt")
    other_alpha = adapted(base, "wrapper", alpha=1.0)
    with pytest.raises(ValueError, match="alpha=4.0"):
        lorautil.load_adapter(other_alpha, path)


def test_an_adapter_saved_with_other_bias_training_is_refused(base, tmp_path):
    path = lorautil.save_adapter(adapted(base, "wrapper", train_bias=True), tmp_path / "a.pt")
    with pytest.raises(ValueError, match="train_bias=True"):
        lorautil.load_adapter(adapted(base, "wrapper"), path)
