"""lorautil against PEFT, its peer: the same adapters, the same files, the same training (notebook 11).

Everything here is local: PeftModel.from_pretrained reads a directory, never the model hub.
"""
import copy
import json
import warnings

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file
from test_lora_layers import METHODS, VIT_TARGETS, adapted, randomize_adapters

import lorautil
from lorautil import DigitsCNN, DigitsViT

# PEFT warns that a plain nn.Module has no Hugging Face config to record; that is expected here.
pytestmark = pytest.mark.filterwarnings("ignore:Unable to fetch remote file:UserWarning",
                                        "ignore:.*config.*:UserWarning")


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return DigitsViT().double()


@pytest.fixture(scope="module")
def images():
    return torch.randn(6, 784, generator=torch.Generator().manual_seed(2), dtype=torch.float64)


def peft_model(base, directory):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return PeftModel.from_pretrained(copy.deepcopy(base), directory)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("options", [{}, dict(train_bias=True, rslora=True, rank_pattern={"blocks.1.attn.q_proj": 2})])
def test_peft_loads_what_save_peft_writes_with_the_same_outputs(vit, images, tmp_path, assert_identity,
                                                                method, options):
    model = adapted(vit, method, VIT_TARGETS, r=4, **options)
    if options.get("train_bias"):
        with torch.no_grad():
            lorautil.base_layer(model.get_submodule("blocks.0.attn.q_proj")).bias.add_(0.5)
    lorautil.save_peft(model, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    theirs = peft_model(vit, tmp_path)
    assert_identity(theirs(images), model(images))
    # Every layer type with PEFT's key names and shapes.
    keys = load_file(tmp_path / "adapter_model.safetensors")
    assert keys["base_model.model.patch_embed.lora_A.weight"].shape == (4, 1, 7, 7)
    assert keys["base_model.model.patch_embed.lora_B.weight"].shape == (64, 4, 1, 1)
    assert keys["base_model.model.pos_embed.lora_embedding_A"].shape == (4, 17)
    assert keys["base_model.model.pos_embed.lora_embedding_B"].shape == (64, 4)
    assert keys["base_model.model.blocks.0.mlp.fc1.lora_A.weight"].shape == (4, 64)
    assert ("base_model.model.blocks.0.attn.q_proj.base_layer.bias" in keys) == bool(options)


@pytest.mark.parametrize("method", METHODS)
def test_load_peft_reads_what_peft_writes_with_the_same_outputs(vit, images, tmp_path, assert_identity, method):
    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "patch_embed", "pos_embed"],
                        rank_pattern={"blocks.0.attn.v_proj": 2}, bias="lora_only", modules_to_save=["head"])
    theirs = get_peft_model(copy.deepcopy(vit), config)
    with torch.no_grad():
        for name, parameter in theirs.named_parameters():
            if "lora_" in name or "modules_to_save" in name or name.endswith("base_layer.bias"):
                parameter.add_(torch.randn_like(parameter) * 0.1)
    theirs.save_pretrained(tmp_path)
    ours = lorautil.load_peft(copy.deepcopy(vit), tmp_path, method=method)
    assert dict((name, lora.r) for name, lora in lorautil.lora_layers(ours))["blocks.0.attn.v_proj"] == 2
    assert_identity(ours(images), theirs(images))


def test_lorautil_and_peft_train_to_the_same_model(train_set, assert_identity):
    """Same A, B and batches: 20 steps of Adam leave the same adapters, in float64."""
    torch.manual_seed(0)
    base = lorautil.DigitsNet(relu_between=True).double()
    ours = lorautil.add_lora(copy.deepcopy(base), 4, alpha=8, method="wrapper")
    config = LoraConfig(r=4, lora_alpha=8, target_modules=list(lorautil.LINEAR_LAYERS))
    theirs = get_peft_model(copy.deepcopy(base), config)
    with torch.no_grad():
        for name, lora in lorautil.lora_layers(ours):
            layer = theirs.base_model.model.get_submodule(name)
            layer.lora_A["default"].weight.copy_(lora.lora_A)
            layer.lora_B["default"].weight.copy_(lora.lora_B)
    losses = {}
    for label, model in (("ours", ours), ("theirs", theirs)):
        torch.manual_seed(1)
        losses[label] = lorautil.train(model, lorautil.batches(train_set, 10, shuffle=True), limit=20, lr=1e-2,
                                       progress=False)
    ours_losses, their_losses = (torch.tensor(losses[label], dtype=torch.float64) for label in ("ours", "theirs"))
    assert_identity(ours_losses, their_losses)
    for name, lora in lorautil.lora_layers(ours):
        assert_identity(lora.lora_B, theirs.base_model.model.get_submodule(name).lora_B["default"].weight)
    assert lorautil.trainable_summary(ours) == _peft_summary(theirs)


def _peft_summary(model):
    trainable, total = model.get_nb_trainable_parameters()
    return f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / total:.4f}"


def test_merged_models_agree_with_peft_merge_and_unload(images, tmp_path, assert_identity):
    torch.manual_seed(0)
    base = DigitsCNN().double()
    ours = adapted(base, "wrapper", ["conv1", "conv2", "fc"])
    lorautil.save_peft(ours, tmp_path)
    theirs = peft_model(base, tmp_path).merge_and_unload()
    merged = lorautil.merge_lora(ours)
    peft_weights = theirs.state_dict()
    assert merged.state_dict().keys() == peft_weights.keys()
    for name, weight in merged.state_dict().items():
        assert_identity(weight, peft_weights[name])
    assert type(theirs) is DigitsCNN


def test_load_peft_keeps_the_files_ranks_even_above_a_layers_smallest_side(tmp_path, images, assert_identity):
    torch.manual_seed(0)
    base = lorautil.DigitsNet(relu_between=True).double()
    theirs = get_peft_model(copy.deepcopy(base), LoraConfig(r=16, lora_alpha=8, target_modules=["linear3"]))
    randomize_adapters_peft(theirs)
    theirs.save_pretrained(tmp_path)
    ours = lorautil.load_peft(copy.deepcopy(base), tmp_path)
    assert dict(lorautil.lora_layers(ours))["linear3"].lora_A.shape == (16, 128)
    assert_identity(ours(images), theirs(images))


def randomize_adapters_peft(model):
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_" in name:
                parameter.copy_(torch.randn_like(parameter) * 0.1)


@pytest.mark.parametrize("break_it, message", [
    (lambda d: (d / "adapter_config.json").unlink(), r"not a PEFT adapter directory: \['adapter_config.json'\]"),
    (lambda d: (d / "adapter_model.safetensors").write_bytes(b"\x00" * 20), "corrupt PEFT adapter"),
    (lambda d: (d / "adapter_config.json").write_text("{"), "corrupt PEFT adapter"),
    (lambda d: _edit_config(d, use_dora=True), "sets use_dora but holds no lora_magnitude_vector"),
    (lambda d: _edit_config(d, peft_type="IA3"), "'IA3' adapter; load_peft reads LoRA only"),
])
def test_a_broken_or_unsupported_adapter_is_refused_and_changes_nothing(vit, tmp_path, break_it, message):
    lorautil.save_peft(adapted(vit, "wrapper", ["q_proj"]), tmp_path)
    break_it(tmp_path)
    model = copy.deepcopy(vit)
    with pytest.raises(ValueError, match=message):
        lorautil.load_peft(model, tmp_path)
    assert not lorautil.has_lora(model)


def _edit_config(directory, **changes):
    path = directory / "adapter_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_an_adapter_for_another_model_is_refused_and_changes_nothing(vit, tmp_path):
    torch.manual_seed(0)
    cnn = DigitsCNN().double()
    lorautil.save_peft(adapted(vit, "wrapper", ["q_proj"]), tmp_path / "vit")
    with pytest.raises(ValueError, match="does not fit this model: unknown target module 'blocks.0.attn.q_proj'"):
        lorautil.load_peft(cnn, tmp_path / "vit")
    assert not lorautil.has_lora(cnn)
    # Same layer names, other shapes: a ViT with a wider MLP.
    wide = DigitsViT(hidden=256).double()
    lorautil.save_peft(adapted(vit, "wrapper", ["fc1"]), tmp_path / "fc1")
    with pytest.raises(ValueError, match=r"fc1.lora_B.weight has shape \(128, 3\), the model expects \(256, 3\)"):
        lorautil.load_peft(wide, tmp_path / "fc1")
    assert not lorautil.has_lora(wide)


def test_save_peft_needs_adapters_and_leaves_no_partial_files(vit, tmp_path):
    with pytest.raises(RuntimeError, match="no LoRA adapters"):
        lorautil.save_peft(copy.deepcopy(vit), tmp_path)
    assert not any(tmp_path.iterdir())
    model = randomize_adapters(lorautil.add_lora(copy.deepcopy(vit), 2, target_modules=["q_proj"]))
    lorautil.save_peft(model, tmp_path)
    lorautil.save_peft(model, tmp_path)  # overwriting is allowed, as PEFT's save_pretrained does
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
