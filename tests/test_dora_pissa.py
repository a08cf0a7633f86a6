"""DoRA and PiSSA against PEFT: the same weights, outputs, gradients, merges and files (notebook 12).

DoRA: Liu et al. 2024, arXiv 2402.09353 (eq. 2 and 5, section 4.3). PiSSA: Meng et al. 2024, arXiv 2404.02948.
Everything here is local: PeftModel.from_pretrained reads a directory, never the model hub.
"""
import copy
import json
import warnings

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file
from test_lora_layers import METHODS, randomize_adapters

import lorautil
from lorautil import DigitsCNN, DigitsNet, DigitsViT

pytestmark = pytest.mark.filterwarnings("ignore:Unable to fetch remote file:UserWarning",
                                        "ignore:.*config.*:UserWarning")

VIT_LINEARS = ["q_proj", "v_proj", "fc1", "head"]
# Float32 results computed by the same operations on the same CPU: equal here, and within a few float32
# roundings of each other's largest value wherever the kernels differ.
FLOAT32 = dict(rtol=1e-6, atol=1e-6)


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return DigitsViT().double()


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return DigitsNet(relu_between=True).double()


@pytest.fixture(scope="module")
def images():
    return torch.randn(6, 784, generator=torch.Generator().manual_seed(2), dtype=torch.float64)


def quiet_peft(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return function(*args, **kwargs)


def dora(base, method, targets=None, r=3, seed=0, **options):
    """A DoRA model with non-zero A, B and magnitudes away from ||W||, so no identity holds by accident."""
    model = copy.deepcopy(base)
    torch.manual_seed(seed)
    model = randomize_adapters(lorautil.add_lora(model, r, alpha=2 * r, method=method, target_modules=targets,
                                                 use_dora=True, **options), seed=seed + 1)
    generator = torch.Generator().manual_seed(seed + 2)
    with torch.no_grad():
        for _, lora in lorautil.lora_layers(model):
            m = lora.lora_magnitude_vector
            m.mul_(1 + 0.2 * torch.randn(m.shape, generator=generator, dtype=m.dtype))
    return model


def peft_layer(peft_model, name):
    return peft_model.base_model.model.get_submodule(name)


def copy_into_peft(ours, theirs):
    """Give PEFT's model our A, B and m."""
    with torch.no_grad():
        for name, lora in lorautil.lora_layers(ours):
            layer = peft_layer(theirs, name)
            layer.lora_A["default"].weight.copy_(lora.lora_A)
            layer.lora_B["default"].weight.copy_(lora.lora_B)
            if lora.use_dora:
                layer.lora_magnitude_vector["default"].weight.copy_(lora.lora_magnitude_vector)


def peft_summary(model):
    trainable, total = model.get_nb_trainable_parameters()
    return f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / total:.4f}"


# DoRA

@pytest.mark.parametrize("method", METHODS)
def test_dora_starts_at_the_base_model_and_computes_what_peft_computes(vit, images, assert_identity, method):
    torch.manual_seed(0)
    fresh = lorautil.add_lora(copy.deepcopy(vit), 3, alpha=6, method=method, target_modules=VIT_LINEARS,
                              use_dora=True)
    for name, lora in lorautil.lora_layers(fresh):  # m = ||W|| per output row, as B = 0
        assert_identity(lora.lora_magnitude_vector, vit.get_submodule(name).weight.norm(dim=1))
    assert_identity(fresh(images), vit(images))
    ours = dora(vit, method, VIT_LINEARS)
    theirs = get_peft_model(copy.deepcopy(vit), LoraConfig(r=3, lora_alpha=6, target_modules=VIT_LINEARS,
                                                           use_dora=True))
    copy_into_peft(ours, theirs)
    assert_identity(ours(images), theirs(images))
    assert (ours(images) - vit(images)).abs().max() > 1e-2  # the adapters change the outputs
    assert lorautil.trainable_summary(ours) == peft_summary(theirs)  # m counts: out numbers per layer
    assert sum(p.numel() for p in ours.parameters() if p.requires_grad) == \
        lorautil.expected_lora_parameters(vit, 3, VIT_LINEARS, use_dora=True)


def test_dora_parametrization_and_wrapper_agree_in_float64(vit, images, assert_identity):
    parametrized, wrapped = (dora(vit, method, VIT_LINEARS, rslora=True) for method in METHODS)
    assert_identity(parametrized(images), wrapped(images))
    # The parametrized weight is m * V / ||V|| with V = W + scaling * B @ A: each row has norm m.
    layer = parametrized.get_submodule("blocks.0.attn.q_proj")
    lora = dict(lorautil.lora_layers(parametrized))["blocks.0.attn.q_proj"]
    assert_identity(layer.weight.norm(dim=1), lora.lora_magnitude_vector)


@pytest.mark.parametrize("method", METHODS)
def test_dora_gradients_and_training_match_peft(net, train_set, assert_identity, method):
    """The norm is detached in both (DoRA section 4.3): same gradients, then 20 Adam steps to the same adapters."""
    torch.manual_seed(0)
    ours = lorautil.add_lora(copy.deepcopy(net), 4, alpha=8, method=method, use_dora=True)
    theirs = get_peft_model(copy.deepcopy(net), LoraConfig(r=4, lora_alpha=8, use_dora=True,
                                                           target_modules=list(lorautil.LINEAR_LAYERS)))
    randomize_adapters(ours)  # B != 0, so that gradients flow to A and through the norm's place
    copy_into_peft(ours, theirs)
    x, y = train_set.images[:10].double(), train_set.labels[:10]
    for model in (ours, theirs):
        torch.nn.functional.cross_entropy(model(x), y).backward()
    for name, lora in lorautil.lora_layers(ours):
        layer = peft_layer(theirs, name)
        assert_identity(lora.lora_A.grad, layer.lora_A["default"].weight.grad)
        assert_identity(lora.lora_B.grad, layer.lora_B["default"].weight.grad)
        assert_identity(lora.lora_magnitude_vector.grad, layer.lora_magnitude_vector["default"].weight.grad)
    losses = {}
    for label, model in (("ours", ours), ("theirs", theirs)):
        model.zero_grad()
        torch.manual_seed(1)
        losses[label] = lorautil.train(model, lorautil.batches(train_set, 10, shuffle=True), limit=20, lr=1e-2,
                                       progress=False)
    assert_identity(*(torch.tensor(losses[label], dtype=torch.float64) for label in ("ours", "theirs")))
    for name, lora in lorautil.lora_layers(ours):
        layer = peft_layer(theirs, name)
        assert_identity(lora.lora_B, layer.lora_B["default"].weight)
        assert_identity(lora.lora_magnitude_vector, layer.lora_magnitude_vector["default"].weight)


@pytest.mark.parametrize("method", METHODS)
def test_dora_merges_unmerges_disables_and_removes(vit, images, tmp_path, assert_identity, method):
    ours = dora(vit, method, VIT_LINEARS)
    expected = ours(images)
    with lorautil.disable_lora(ours):
        assert torch.equal(ours(images), vit(images))
    if method == "wrapper":  # merge(): m * V / ||V||; unmerge(): W again, from the norm kept at merge time
        layers = dict(lorautil.lora_layers(ours))
        for lora in layers.values():
            lora.merge()
        assert_identity(ours(images), expected)
        for lora in layers.values():
            lora.unmerge()
        for name, lora in layers.items():
            assert_identity(lora.base.weight, vit.get_submodule(name).weight)
    # merge_lora matches PEFT's merge_and_unload, weight by weight.
    theirs = get_peft_model(copy.deepcopy(vit), LoraConfig(r=3, lora_alpha=6, target_modules=VIT_LINEARS,
                                                           use_dora=True))
    copy_into_peft(ours, theirs)
    merged, peft_merged = lorautil.merge_lora(copy.deepcopy(ours)), theirs.merge_and_unload()
    assert_identity(merged(images), expected)
    peft_weights = peft_merged.state_dict()
    assert merged.state_dict().keys() == peft_weights.keys()
    for name, weight in merged.state_dict().items():
        assert_identity(weight, peft_weights[name])
    removed = lorautil.remove_lora(ours)
    assert_identity(removed(images), vit(images))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("options", [{}, dict(train_bias=True, rslora=True, rank_pattern={"blocks.1.attn.q_proj": 2})])
def test_dora_files_round_trip_with_lorautil_and_peft(vit, images, tmp_path, assert_identity, method, options):
    ours = dora(vit, method, VIT_LINEARS, **options)
    expected = ours(images)
    # lorautil's own files.
    lorautil.save_adapter(ours, tmp_path / "adapter.pt")
    loaded = lorautil.load_adapter(copy.deepcopy(vit), tmp_path / "adapter.pt")
    assert_identity(loaded(images), expected)
    # PEFT reads what save_peft writes ...
    lorautil.save_peft(ours, tmp_path / "ours")
    keys = load_file(tmp_path / "ours" / "adapter_model.safetensors")
    assert keys["base_model.model.blocks.0.attn.q_proj.lora_magnitude_vector"].shape == (64,)
    assert json.loads((tmp_path / "ours" / "adapter_config.json").read_text())["use_dora"] is True
    theirs = quiet_peft(PeftModel.from_pretrained, copy.deepcopy(vit), tmp_path / "ours")
    assert_identity(theirs(images), expected)
    # ... and load_peft reads what PEFT writes, with its own magnitudes.
    with torch.no_grad():
        for name, parameter in theirs.named_parameters():
            if "lora_magnitude_vector" in name:
                parameter.mul_(1.1)
    theirs.save_pretrained(tmp_path / "theirs")
    back = lorautil.load_peft(copy.deepcopy(vit), tmp_path / "theirs", method=method)
    assert_identity(back(images), theirs(images))
    assert (back(images) - expected).abs().max() > 1e-3


def test_dora_is_refused_on_conv_and_embedding_layers_and_changes_nothing(tmp_path):
    torch.manual_seed(0)
    cnn = DigitsCNN().double()
    for method in METHODS:
        model = copy.deepcopy(cnn)
        with pytest.raises(ValueError, match="'conv1' is a Conv2d: DoRA .* nn.Linear layers only"):
            lorautil.add_lora(model, 2, method=method, target_modules=["conv1", "fc"], use_dora=True)
        assert not lorautil.has_lora(model) and all(p.requires_grad for p in model.parameters())
    theirs = get_peft_model(copy.deepcopy(cnn), LoraConfig(r=2, target_modules=["conv1"], use_dora=True))
    theirs.save_pretrained(tmp_path)
    model = copy.deepcopy(cnn)
    with pytest.raises(ValueError, match="cannot be loaded here: 'conv1' is a Conv2d: DoRA"):
        lorautil.load_peft(model, tmp_path)
    assert not lorautil.has_lora(model)


def test_a_dora_file_without_its_magnitudes_is_refused(vit, tmp_path):
    lorautil.save_peft(dora(vit, "wrapper", ["q_proj"]), tmp_path)
    tensors = load_file(tmp_path / "adapter_model.safetensors")
    from safetensors.torch import save_file
    save_file({k: v for k, v in tensors.items() if "magnitude" not in k}, tmp_path / "adapter_model.safetensors")
    model = copy.deepcopy(vit)
    with pytest.raises(ValueError, match="sets use_dora but holds no lora_magnitude_vector"):
        lorautil.load_peft(model, tmp_path)
    assert not lorautil.has_lora(model)


# PiSSA

def peft_pissa(base, r=4, alpha=8, targets=None, **options):
    config = LoraConfig(r=r, lora_alpha=alpha, target_modules=targets or list(lorautil.LINEAR_LAYERS),
                        init_lora_weights="pissa", **options)
    return get_peft_model(copy.deepcopy(base), config)


def residual_weight(model, name):
    """The base weight under a LoRA layer: parametrizations.weight.original, or the wrapper's base.weight."""
    layer = model.get_submodule(name)
    if isinstance(layer, lorautil.LoRAWrapper):
        return layer.base.weight
    return layer.parametrizations.weight.original


@pytest.mark.parametrize("method", METHODS)
def test_pissa_gives_peft_s_factors_and_residual_in_float32(net, method):
    base = copy.deepcopy(net).float()
    ours = lorautil.add_lora(copy.deepcopy(base), 4, alpha=8, method=method, init="pissa", rank_pattern={"linear3": 2})
    theirs = peft_pissa(base, rank_pattern={"linear3": 2})
    for name, lora in lorautil.lora_layers(ours):
        layer = peft_layer(theirs, name)
        torch.testing.assert_close(lora.lora_A, layer.lora_A["default"].weight, **FLOAT32)
        torch.testing.assert_close(lora.lora_B, layer.lora_B["default"].weight, **FLOAT32)
        torch.testing.assert_close(residual_weight(ours, name), layer.base_layer.weight, **FLOAT32)
    x = torch.randn(5, 784)
    torch.testing.assert_close(ours(x), base(x), **FLOAT32)  # the model starts as it was, up to rounding
    # disable_lora gives the residual model, as PEFT's disable_adapter does: not the original one.
    with lorautil.disable_lora(ours), theirs.disable_adapter():
        torch.testing.assert_close(ours(x), theirs(x), **FLOAT32)
        assert (ours(x) - base(x)).abs().max() > 0.1


def test_pissa_in_float64_is_the_top_r_svd_and_peft_refuses_float64(net, images, assert_identity):
    """PEFT runs PiSSA in float32 only; lorautil runs it in float64 for a float64 model."""
    with pytest.raises(TypeError, match="float32, float16, or bfloat16"):
        peft_pissa(net)
    outputs = {}
    for method in METHODS:
        ours = lorautil.add_lora(copy.deepcopy(net), 4, alpha=8, method=method, init="pissa")
        assert_identity(ours(images), net(images))
        for name, lora in lorautil.lora_layers(ours):
            weight = net.get_submodule(name).weight
            assert_identity(lora.delta_weight(), lorautil.truncated_svd(weight, 4))
            assert_identity(residual_weight(ours, name) + lora.delta_weight(), weight)
            assert lora.lora_A.dtype == torch.float64
        outputs[method] = randomize_adapters(ours)(images)
        assert_identity(lorautil.merge_lora(ours)(images), outputs[method])
    assert_identity(outputs["parametrization"], outputs["wrapper"])
    # Against PEFT's float32 PiSSA: the same update to float32 accuracy (singular vectors may flip signs).
    theirs = peft_pissa(copy.deepcopy(net).float())
    ours = lorautil.add_lora(copy.deepcopy(net), 4, alpha=8, init="pissa")
    for name, lora in lorautil.lora_layers(ours):
        layer = peft_layer(theirs, name)
        peft_update = layer.lora_B["default"].weight @ layer.lora_A["default"].weight * 2.0
        torch.testing.assert_close(lora.delta_weight().float(), peft_update, rtol=1e-4, atol=1e-5)


def test_pissa_is_refused_on_conv_layers_and_above_a_layers_rank():
    torch.manual_seed(0)
    cnn = DigitsCNN()
    with pytest.raises(ValueError, match="'conv1' is a Conv2d: .*PiSSA \\(init='pissa'\\) .* nn.Linear layers only"):
        lorautil.add_lora(cnn, 2, target_modules=["conv1"], init="pissa")
    assert not lorautil.has_lora(cnn)
    with pytest.raises(ValueError, match="r=11 is larger than linear3's smallest side"):
        lorautil.add_lora(DigitsNet(), 11, init="pissa", target_modules=["linear3"])


@pytest.mark.parametrize("method", METHODS)
def test_pissa_files_load_onto_the_original_model_as_in_peft(net, tmp_path, method):
    """PEFT's file says init_lora_weights "pissa": PEFT and load_peft compute the residual again from the original."""
    base = copy.deepcopy(net).float()
    ours = randomize_adapters(lorautil.add_lora(copy.deepcopy(base), 4, alpha=8, method=method, init="pissa"))
    x = torch.randn(5, 784)
    lorautil.save_peft(ours, tmp_path / "ours")
    assert json.loads((tmp_path / "ours" / "adapter_config.json").read_text())["init_lora_weights"] == "pissa"
    theirs = quiet_peft(PeftModel.from_pretrained, copy.deepcopy(base), tmp_path / "ours")
    torch.testing.assert_close(theirs(x), ours(x), **FLOAT32)
    peft_trained = randomize_adapters_peft(peft_pissa(base))
    peft_trained.save_pretrained(tmp_path / "theirs")
    back = lorautil.load_peft(copy.deepcopy(base), tmp_path / "theirs", method=method)
    torch.testing.assert_close(back(x), peft_trained(x), **FLOAT32)
    # lorautil's own files: load_adapter onto the original model computes the residual again too.
    lorautil.save_adapter(ours, tmp_path / "adapter.pt")
    torch.testing.assert_close(lorautil.load_adapter(copy.deepcopy(base), tmp_path / "adapter.pt")(x), ours(x),
                               **FLOAT32)


def randomize_adapters_peft(model):
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_" in name:
                parameter.add_(torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype) * 0.1)
    return model


def test_pissa_saved_in_float64_loads_with_the_same_outputs_in_lorautil(net, images, tmp_path, assert_identity):
    ours = randomize_adapters(lorautil.add_lora(copy.deepcopy(net), 4, alpha=8, init="pissa"))
    lorautil.save_adapter(ours, tmp_path / "adapter.pt")
    assert_identity(lorautil.load_adapter(copy.deepcopy(net), tmp_path / "adapter.pt")(images), ours(images))
    lorautil.save_peft(ours, tmp_path / "peft")
    assert_identity(lorautil.load_peft(copy.deepcopy(net), tmp_path / "peft")(images), ours(images))


@pytest.mark.parametrize("options", [{}, dict(rslora=True, rank_pattern={"linear3": 2}, train_bias=True)])
def test_pissa_converted_to_plain_lora_loads_onto_the_original_model(net, images, tmp_path, assert_identity,
                                                                      options):
    ours = lorautil.add_lora(copy.deepcopy(net), 4, alpha=8, init="pissa", **options)
    initial = lorautil.adapter_state(ours)
    randomize_adapters(ours)
    if options:
        with torch.no_grad():
            lorautil.base_layer(ours.get_submodule("linear1")).bias.add_(0.5)
    lorautil.save_peft(ours, tmp_path, convert_pissa_to_lora=initial)
    settings = json.loads((tmp_path / "adapter_config.json").read_text())
    assert (settings["r"], settings["init_lora_weights"]) == (8, True)
    assert load_file(tmp_path / "adapter_model.safetensors")["base_model.model.linear1.lora_A.weight"].shape == (8, 784)
    theirs = quiet_peft(PeftModel.from_pretrained, copy.deepcopy(net), tmp_path)  # float64: no PiSSA on loading
    assert_identity(theirs(images), ours(images))
    assert_identity(lorautil.load_peft(copy.deepcopy(net), tmp_path)(images), ours(images))


def test_pissa_conversion_writes_what_peft_writes(net, tmp_path):
    """PEFT's save_pretrained(path_initial_model_for_weight_conversion=...) and ours give the same file."""
    base = copy.deepcopy(net).float()
    theirs = peft_pissa(base)
    theirs.save_pretrained(tmp_path / "initial")
    ours = lorautil.add_lora(copy.deepcopy(base), 4, alpha=8, init="pissa")
    initial = lorautil.adapter_state(ours)
    randomize_adapters_peft(theirs)
    with torch.no_grad():
        for name, lora in lorautil.lora_layers(ours):
            lora.lora_A.copy_(peft_layer(theirs, name).lora_A["default"].weight)
            lora.lora_B.copy_(peft_layer(theirs, name).lora_B["default"].weight)
    quiet_peft(theirs.save_pretrained, tmp_path / "theirs",
               path_initial_model_for_weight_conversion=str(tmp_path / "initial"))
    lorautil.save_peft(ours, tmp_path / "ours", convert_pissa_to_lora=initial)
    peft_file, our_file = (load_file(tmp_path / side / "adapter_model.safetensors") for side in ("theirs", "ours"))
    assert peft_file.keys() == our_file.keys()
    for key, tensor in our_file.items():
        torch.testing.assert_close(tensor, peft_file[key], **FLOAT32)
    peft_settings, our_settings = (json.loads((tmp_path / side / "adapter_config.json").read_text())
                                   for side in ("theirs", "ours"))
    for key in ("r", "lora_alpha", "init_lora_weights", "rank_pattern", "use_dora"):
        assert our_settings[key] == peft_settings[key]


def test_pissa_conversion_needs_a_pissa_model_and_its_initial_factors(net, tmp_path):
    plain = lorautil.add_lora(copy.deepcopy(net), 2)
    with pytest.raises(ValueError, match="convert_pissa_to_lora is for a model made with init='pissa'"):
        lorautil.save_peft(plain, tmp_path, convert_pissa_to_lora=lorautil.adapter_state(plain))
    pissa = lorautil.add_lora(copy.deepcopy(net), 2, init="pissa")
    with pytest.raises(ValueError, match="no initial A and B shaped like linear1's"):
        lorautil.save_peft(pissa, tmp_path, convert_pissa_to_lora=lorautil.adapter_state(plain) | {"linear1.lora_A": 0})
    assert not any(tmp_path.iterdir())


def test_dora_and_pissa_together_match_peft_in_float32(net):
    base = copy.deepcopy(net).float()
    ours = lorautil.add_lora(copy.deepcopy(base), 4, alpha=8, method="wrapper", init="pissa", use_dora=True)
    theirs = peft_pissa(base, use_dora=True)
    x = torch.randn(5, 784)
    for name, lora in lorautil.lora_layers(ours):
        torch.testing.assert_close(lora.lora_magnitude_vector,
                                   peft_layer(theirs, name).lora_magnitude_vector["default"].weight, **FLOAT32)
    randomize_adapters(ours)
    copy_into_peft(ours, theirs)
    torch.testing.assert_close(ours(x), theirs(x), **FLOAT32)
