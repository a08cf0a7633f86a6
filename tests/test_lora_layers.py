"""LoRA on Conv2d and Embedding layers, PEFT's target-name rule and rank_pattern (notebooks 09 and 10)."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lorautil
from lorautil import DigitsCNN, DigitsViT

METHODS = ["parametrization", "wrapper"]
VIT_TARGETS = ["patch_embed", "pos_embed", "q_proj", "v_proj", "fc1"]


def randomize_adapters(model, seed=1):
    """Non-zero A and B everywhere, so that an identity cannot hold just because B @ A = 0."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, lora in lorautil.lora_layers(model):
            for factor in (lora.lora_A, lora.lora_B):
                factor.copy_(torch.randn(factor.shape, generator=generator, dtype=factor.dtype) * 0.1)
    return model


def adapted(base, method, targets, r=3, seed=0, **options):
    model = copy.deepcopy(base)
    torch.manual_seed(seed)
    return randomize_adapters(lorautil.add_lora(model, r, alpha=2 * r, method=method, target_modules=targets,
                                                **options))


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return DigitsViT().double()


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    return DigitsCNN().double()


@pytest.fixture(scope="module")
def images():
    return torch.randn(6, 784, generator=torch.Generator().manual_seed(2), dtype=torch.float64)


def test_factor_shapes_and_inits_follow_peft(vit):
    model = lorautil.add_lora(copy.deepcopy(vit).float(), 4, target_modules=["patch_embed", "pos_embed", "q_proj"])
    layers = dict(lorautil.lora_layers(model))
    conv, embedding, linear = layers["patch_embed"], layers["pos_embed"], layers["blocks.0.attn.q_proj"]
    assert conv.lora_A.shape == (4, 1, 7, 7) and conv.lora_B.shape == (64, 4, 1, 1)
    assert embedding.lora_A.shape == (4, 17) and embedding.lora_B.shape == (64, 4)
    assert linear.lora_A.shape == (4, 64) and linear.lora_B.shape == (64, 4)
    # Conv: kaiming-uniform with a = sqrt(5) over fan_in = in * kh * kw; B zero.
    assert conv.lora_A.abs().max() <= 1 / math.sqrt(49) and conv.lora_A.std() > 0.05
    assert not conv.lora_B.any()
    # Embedding: the factors swap roles, A zero and B N(0, 1), as in PEFT and loralib.
    assert not embedding.lora_A.any() and 0.8 < embedding.lora_B.std() < 1.2
    assert not any(lora.delta_weight().any() for lora in layers.values())


@pytest.mark.parametrize("model_name, targets", [("cnn", ["conv1", "conv2", "fc"]), ("vit", VIT_TARGETS)])
def test_both_methods_merge_and_disable_agree_in_float64(request, images, assert_identity, model_name, targets):
    base = request.getfixturevalue(model_name)
    expected = base(images)
    outputs = {}
    for method in METHODS:
        model = adapted(base, method, targets)
        outputs[method] = model(images)
        with lorautil.disable_lora(model):
            assert torch.equal(model(images), expected)
        merged = lorautil.merge_lora(copy.deepcopy(model))
        assert not lorautil.has_lora(merged)
        assert {type(m) for m in merged.modules()} == {type(m) for m in base.modules()}
        assert_identity(merged(images), outputs[method])
    assert (outputs["wrapper"] - expected).abs().max() > 1e-3  # the adapters change the outputs
    assert_identity(outputs["parametrization"], outputs["wrapper"])


def test_conv_branch_is_two_convolutions_and_equals_the_merged_kernel(assert_identity):
    torch.manual_seed(0)
    base = nn.Conv2d(3, 5, kernel_size=3, stride=2, padding=1).double()
    lora = randomize_adapters(lorautil.add_lora(nn.Sequential(base), 2, method="wrapper", target_modules="0"))[0]
    x = torch.randn(2, 3, 9, 9, dtype=torch.float64)
    by_hand = F.conv2d(F.conv2d(x, lora.lora_A, stride=2, padding=1), lora.lora_B) * lora.scaling
    assert_identity(lora.branch(x), by_hand)
    assert_identity(lora(x), F.conv2d(x, base.weight + lora.delta_weight(), base.bias, stride=2, padding=1))


def test_embedding_branch_is_a_lookup_into_a_transposed(assert_identity):
    torch.manual_seed(0)
    base = nn.Embedding(11, 6, padding_idx=0).double()
    lora = randomize_adapters(lorautil.add_lora(nn.Sequential(base), 3, method="wrapper", target_modules="0"))[0]
    tokens = torch.tensor([[0, 3, 10], [5, 5, 1]])
    one_hot = F.one_hot(tokens, 11).double()
    assert_identity(lora.branch(tokens), one_hot @ lora.lora_A.T @ lora.lora_B.T * lora.scaling)
    assert_identity(lora(tokens), F.embedding(tokens, base.weight + lora.delta_weight()))


def test_a_saved_adapter_loads_into_conv_and_embedding_layers(vit, images, tmp_path, assert_identity):
    for method in METHODS:
        model = adapted(vit, method, VIT_TARGETS)
        lorautil.save_adapter(model, tmp_path / f"{method}.pt")
        fresh = lorautil.load_adapter(copy.deepcopy(vit), tmp_path / f"{method}.pt")
        assert_identity(fresh(images), model(images))


def test_targets_match_full_names_or_their_endings_as_in_peft(vit):
    assert lorautil.lora.resolve_targets(vit, ["q_proj", "blocks.1.mlp.fc2"]) == [
        "blocks.0.attn.q_proj", "blocks.1.attn.q_proj", "blocks.1.mlp.fc2"]
    assert lorautil.lora.resolve_targets(vit, ["attn.v_proj"]) == ["blocks.0.attn.v_proj", "blocks.1.attn.v_proj"]
    # A single string is a regular expression over full names, as in PEFT.
    assert lorautil.lora.resolve_targets(vit, r".*attn\.(q|v)_proj") == [
        "blocks.0.attn.q_proj", "blocks.0.attn.v_proj", "blocks.1.attn.q_proj", "blocks.1.attn.v_proj"]
    with pytest.raises(ValueError, match=r"regular expression \(as in PEFT\) and matches no module's full name"):
        lorautil.lora.resolve_targets(vit, "q_proj")
    # None still means every Linear layer, never the Conv2d or Embedding ones.
    assert "patch_embed" not in lorautil.lora.resolve_targets(vit, None)
    assert len(lorautil.lora.resolve_targets(vit, None)) == 2 * 6 + 1


@pytest.mark.parametrize("layer, message", [
    (nn.Conv2d(8, 8, 3, groups=2), r"grouped convolution \(groups=2\)"),
    (nn.Conv2d(8, 8, 3, dilation=2), "dilation 1 and zero padding"),
    (nn.Conv2d(8, 8, 3, padding=1, padding_mode="reflect"), "dilation 1 and zero padding"),
    (nn.Embedding(10, 4, max_norm=1.0), "max_norm"),
])
def test_unsupported_layers_are_refused_and_nothing_changes(layer, message):
    model = nn.Sequential(layer)
    with pytest.raises(ValueError, match=message):
        lorautil.add_lora(model, 2, target_modules="0")
    assert not lorautil.has_lora(model) and all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("targets, error, message", [
    (["norm1"], TypeError, "is a LayerNorm: LoRA here adapts nn.Linear, nn.Conv2d and nn.Embedding"),
    (["q_proj", "k_prj"], ValueError, r"unknown target module 'k_prj'.*blocks.0.attn.k_proj"),
    (["q_proj", "blocks.0.attn.q_proj"], ValueError, "name each layer once"),
])
def test_bad_targets_are_refused_and_nothing_changes(vit, targets, error, message):
    model = copy.deepcopy(vit)
    with pytest.raises(error, match=message):
        lorautil.add_lora(model, 2, target_modules=targets)
    assert not lorautil.has_lora(model) and all(p.requires_grad for p in model.parameters())


def test_parameter_counts_and_rank_caps_for_convolutions(cnn):
    # conv1: 16 out, 1*3*3 = 9 inputs per output, so its update has rank at most 9.
    expected = (16 + 9) * 9 + (32 + 16 * 9) * 12 + (10 + 1568) * 10
    assert lorautil.expected_lora_parameters(cnn, 12, ["conv1", "conv2", "fc"]) == expected
    with pytest.raises(ValueError, match=r"r=12 is larger than conv1's smallest side \(an update of 16x9\)"):
        lorautil.add_lora(copy.deepcopy(cnn), 12, target_modules=["conv1"])
    model = lorautil.add_lora(copy.deepcopy(cnn), 12, target_modules=["conv1", "conv2", "fc"], cap_rank=True)
    assert lorautil.count_parameters(model, trainable_only=True) == expected


def test_rank_pattern_gives_named_layers_their_own_rank(vit):
    model = lorautil.add_lora(copy.deepcopy(vit), 4, alpha=8, target_modules=["q_proj"],
                              rank_pattern={"blocks.1.attn.q_proj": 2})
    layers = dict(lorautil.lora_layers(model))
    assert (layers["blocks.0.attn.q_proj"].r, layers["blocks.1.attn.q_proj"].r) == (4, 2)
    assert (layers["blocks.0.attn.q_proj"].scaling, layers["blocks.1.attn.q_proj"].scaling) == (2.0, 4.0)
    with pytest.raises(ValueError, match="rank_pattern names .*blocks.0.attn.k_proj"):
        lorautil.add_lora(copy.deepcopy(vit), 4, target_modules=["q_proj"], rank_pattern={"blocks.0.attn.k_proj": 2})
    with pytest.raises(ValueError, match="rank_pattern"):
        lorautil.add_lora(copy.deepcopy(vit), 4, target_modules=["q_proj"], rank_pattern={"blocks.0.attn.q_proj": 0})


def test_vision_models_classify_flat_digits_and_name_their_files(tmp_path):
    torch.manual_seed(0)
    flat = torch.randn(3, 784)
    assert DigitsViT()(flat).shape == (3, 10) and DigitsCNN()(flat).shape == (3, 10)
    assert lorautil.pretrained_path("vit", tmp_path) == tmp_path / "digitsvit_base.pt"
    with pytest.raises(ValueError, match=r"unknown model 'resnet': choose from \['cnn', 'vit'\]"):
        lorautil.pretrained_path("resnet")
    corrupt = tmp_path / "broken.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="(?s)is not a saved DigitsCNN.*delete it"):
        lorautil.load_pretrained("cnn", device="cpu", path=corrupt)
