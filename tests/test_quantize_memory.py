"""A frozen NF4 base under LoRA (QLoRA's idea) and the per-component memory of a training step (notebook 12)."""
import copy

import pytest
import torch

import lorautil
from lorautil import NF4Linear, dequantize_model, quantize_model, training_memory


@pytest.fixture
def net():
    torch.manual_seed(0)
    return lorautil.DigitsNet(relu_between=True)


def test_nf4_linear_computes_with_its_dequantized_weight_forward_and_backward(net):
    layer = NF4Linear(net.linear2).double()
    plain = torch.nn.Linear(256, 128).double()
    with torch.no_grad():
        plain.weight.copy_(layer.dequantized(torch.float64))
        plain.bias.copy_(layer.bias)
    x1 = torch.randn(7, 256, dtype=torch.float64, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    out1, out2 = layer(x1), plain(x2)
    lorautil.assert_identity(out1, out2)
    grad = torch.randn_like(out1)
    out1.backward(grad)
    out2.backward(grad)
    lorautil.assert_identity(x1.grad, x2.grad)
    assert not any(p.requires_grad for p in layer.parameters())


def test_quantized_model_stores_under_0_6_bytes_per_weight_and_dequantizes_back(net):
    quantized = quantize_model(copy.deepcopy(net))
    weights = sum(layer.weight.numel() for layer in (net.linear1, net.linear2, net.linear3))
    stored = sum(b.numel() * b.element_size() for b in quantized.buffers())
    assert stored / weights <= 0.6
    x = torch.randn(5, 1, 28, 28)
    restored = dequantize_model(copy.deepcopy(quantized))
    assert all(type(m) is torch.nn.Linear for m in (restored.linear1, restored.linear2, restored.linear3))
    with torch.no_grad():
        torch.testing.assert_close(quantized(x), restored(x), rtol=1e-5, atol=1e-5)
        assert not torch.equal(quantized(x), net(x))  # 4 bits round the weights
    with pytest.raises(ValueError, match="no nn.Linear layers to quantize"):
        quantize_model(quantized)


def test_lora_trains_over_a_frozen_nf4_base_that_never_changes(net):
    model = lorautil.add_lora(quantize_model(copy.deepcopy(net)), 4, method="wrapper")
    before = {name: b.clone() for name, b in model.named_buffers()}
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    losses = lorautil.train(model, [(x, y)] * 5, lr=1e-2, progress=False)
    assert losses[-1] < losses[0]
    assert all(torch.equal(b, before[name]) for name, b in model.named_buffers())
    with lorautil.disable_lora(model), torch.no_grad():
        torch.testing.assert_close(model(x), quantize_model(copy.deepcopy(net))(x), rtol=0, atol=0)
    with pytest.raises(AttributeError, match="stored in 4 bits"):
        lorautil.merge_lora(model)


def test_training_memory_counts_each_component(net):
    x, y = torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,))
    full = training_memory(copy.deepcopy(net).requires_grad_(True), x, y)
    lora = training_memory(lorautil.add_lora(copy.deepcopy(net), 4, method="wrapper"), x, y)
    qlora = training_memory(lorautil.add_lora(quantize_model(copy.deepcopy(net)), 4, method="wrapper"), x, y)
    weights = 4 * lorautil.count_parameters(net)
    adapter = 4 * lorautil.expected_lora_parameters(net, 4)
    assert full["trainable weights"] == full["gradients"] == weights and full["frozen weights"] == 0
    assert full["optimizer state"] == 2 * weights  # Adam: two moments per weight
    assert lora["trainable weights"] == lora["gradients"] == adapter and lora["optimizer state"] == 2 * adapter
    assert lora["frozen weights"] == weights
    assert qlora["frozen weights"] < 0.2 * weights
    # The input to every layer is saved for backward either way: LoRA saves no less activation memory.
    assert lora["activations"] >= full["activations"] > 32 * 784 * 4
    with pytest.raises(ValueError, match="no trainable parameters"):
        training_memory(copy.deepcopy(net).requires_grad_(False), x, y)


def test_lora_on_an_nf4_base_must_be_a_plain_wrapper(net):
    quantized = quantize_model(copy.deepcopy(net))
    for options in ({}, {"method": "wrapper", "use_dora": True}, {"method": "wrapper", "init": "pissa"}):
        with pytest.raises(ValueError, match="hold 4-bit NF4 weights"):
            lorautil.add_lora(quantized, 2, **options)
        assert not lorautil.has_lora(quantized)


def test_a_batch_sliced_from_a_data_set_counts_as_the_batch(net):
    data, labels = torch.randn(6_000, 1, 28, 28), torch.randint(0, 10, (6_000,))
    model = lorautil.add_lora(copy.deepcopy(net), 4, method="wrapper")
    sliced = training_memory(copy.deepcopy(model), data[:10], labels[:10])["activations"]
    copied = training_memory(copy.deepcopy(model), data[:10].clone(), labels[:10].clone())["activations"]
    assert sliced == copied < 100_000
