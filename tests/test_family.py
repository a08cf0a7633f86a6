"""The LoRA family: LoRA+ against PEFT's optimizer, NF4 quantization as in QLoRA (notebook 12)."""
import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from peft.optimizers import create_loraplus_optimizer

import lorautil
from lorautil import NF4_LEVELS, DigitsViT, quantize_nf4


def test_loraplus_gives_each_parameter_the_learning_rate_peft_gives_it():
    torch.manual_seed(0)
    base = DigitsViT()
    targets = ["q_proj", "fc1", "pos_embed"]
    ours = lorautil.add_lora(copy.deepcopy(base), 4, method="wrapper", target_modules=targets, train_bias=True)
    theirs = get_peft_model(copy.deepcopy(base), LoraConfig(r=4, target_modules=targets, bias="lora_only"))
    optimizer = lorautil.loraplus_optimizer(ours, lr=1e-3, ratio=16)
    peft_optimizer = create_loraplus_optimizer(theirs, torch.optim.Adam, lr=1e-3, loraplus_lr_ratio=16)
    ours_lr = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    peft_lr = {name: group["lr"] for name, p in theirs.named_parameters()
               for group in peft_optimizer.param_groups if any(p is q for q in group["params"])}
    expected = {}
    for name, lora in lorautil.lora_layers(ours):
        factor = "lora_embedding_{}.default" if lora.embedding else "lora_{}.default.weight"
        expected[f"base_model.model.{name}.{factor.format('A')}"] = ours_lr[id(lora.lora_A)]
        expected[f"base_model.model.{name}.{factor.format('B')}"] = ours_lr[id(lora.lora_B)]
        if getattr(lora.base, "bias", None) is not None:
            expected[f"base_model.model.{name}.base_layer.bias"] = ours_lr[id(lora.base.bias)]
    assert expected == peft_lr
    assert sorted(set(peft_lr.values())) == [1e-6, 1e-3, 16e-3]  # embedding, A, B (and biases)


def test_loraplus_needs_adapters_and_a_sensible_ratio():
    with pytest.raises(RuntimeError, match="no LoRA adapters"):
        lorautil.loraplus_optimizer(lorautil.DigitsNet(), lr=1e-3)
    with pytest.raises(ValueError, match="should be >= 1"):
        lorautil.loraplus_optimizer(lorautil.add_lora(lorautil.DigitsNet(), 2), lr=1e-3, ratio=0.5)


def test_nf4_stores_the_nearest_of_16_levels_per_weight_in_under_0_6_bytes():
    torch.manual_seed(0)
    weight = torch.randn(256, 784) * 0.05
    quantized = quantize_nf4(weight, block_size=64)
    assert quantized.nbytes / weight.numel() == 0.5 + 4 / 64  # 4 bits, plus a float32 absmax per 64 weights
    blocks = weight.view(-1, 64)
    scaled = (blocks / blocks.abs().amax(dim=1, keepdim=True)).flatten()
    levels = torch.tensor(NF4_LEVELS)
    assert torch.equal(quantized.indices(), (scaled[:, None] - levels).abs().argmin(dim=1))
    restored = quantized.dequantize().view(-1, 64)
    on_levels = restored / quantized.absmax[:, None]
    assert torch.allclose((on_levels.flatten()[:, None] - levels).abs().min(dim=1).values, torch.zeros(1), atol=1e-6)
    # Each block's largest weight is stored exactly: it maps to level -1 or 1.
    assert torch.allclose(restored.abs().amax(dim=1), blocks.abs().amax(dim=1))


def test_nf4_keeps_odd_shapes_and_zero_blocks_and_refuses_bad_blocks():
    weight = torch.zeros(5, 7)
    weight[0, :3] = torch.tensor([0.3, -0.2, 0.05])
    quantized = quantize_nf4(weight, block_size=4)
    assert quantized.dequantize().shape == (5, 7) and quantized.absmax.numel() == 9
    assert not quantized.dequantize()[1:].any()  # all-zero blocks come back as zeros, not NaN
    with pytest.raises(ValueError, match="block_size must be at least 1"):
        quantize_nf4(weight, block_size=0)
