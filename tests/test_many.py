"""finetune_many: LoRA fine-tunes trained together, stacked in one model, equal finetune() run one at a time."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lorautil
from lorautil import FlatAdam, finetune, finetune_many
from lorautil.lora import many

# The per-run options a sweep varies: ranks (one capped at linear3's 10 outputs, one set per layer),
# alpha, rsLoRA, seeds, learning rates, inits, target subsets and both methods.
CONFIGS = [
    {"r": 2, "seed": 0},
    {"r": 16, "cap_rank": True, "alpha": 4.0, "seed": 1, "lr": 3e-3},
    {"r": 3, "rslora": True, "init": "standard_normal", "seed": 2, "target_modules": ["linear1", "linear3"]},
    {"r": 5, "init": "gaussian", "seed": 3, "lr": 1e-2, "target_modules": ["linear2"], "method": "wrapper"},
    {"r": 4, "rank_pattern": {"linear3": 1}, "seed": 4, "init": "kaiming"},
    {"r": 2, "seed": 0, "lr": 3e-3},  # the first config's rank and seed at another lr
]
# 58 images of the fine-tuning digits: 5 full batches and one of 8, so 15 steps start 3 epochs.
COMMON = {"steps": 15, "batch_size": 10}


@pytest.fixture(scope="module")
def base():
    """DigitsNet in float64, so that the two ways agree to rounding (see lorautil.numerics)."""
    torch.manual_seed(0)
    model = lorautil.float64_copy(lorautil.DigitsNet())
    with torch.no_grad():  # a base whose outputs are not all clipped to zero
        for p in model.parameters():
            p.mul_(3)
    return model


@pytest.fixture(scope="module")
def data():
    generator = torch.Generator().manual_seed(0)
    return lorautil.MNISTTensors(torch.randn(117, 784, generator=generator), torch.arange(117) % 10)


@pytest.fixture(scope="module")
def one_at_a_time(base, data):
    return [finetune(base, data, **COMMON, **config) for config in CONFIGS]


@pytest.fixture(scope="module")
def recorded(base, data):
    """finetune_many's results, with the stacked model and the models in stack order before and after training."""
    seen = {}
    stack, train_stacked = many._stack, many._train_stacked

    def record_stack(base_model, models):
        seen["models"] = models
        return stack(base_model, models)

    def record_training(stacked, *args):
        seen["stacked"] = stacked
        seen["initial"] = copy.deepcopy(stacked.state_dict())
        return train_stacked(stacked, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(many, "_stack", record_stack)
        patch.setattr(many, "_train_stacked", record_training)
        seen["results"] = finetune_many(base, data, CONFIGS, **COMMON)
    return seen


def stacked_layers(stacked):
    return [(name, layer) for name, layer in stacked.named_modules() if isinstance(layer, many.StackedLoRALinear)]


def ranks_in_stack(models, name):
    """Each model's rank at layer `name`, in stack order; 0 where a model does not adapt it."""
    return [dict((n, lora.r) for n, lora in lorautil.lora_layers(model)).get(name, 0) for model in models]


def test_every_run_equals_its_finetune(one_at_a_time, recorded, data, assert_identity):
    x = data.images[:40].double()
    assert len(recorded["results"]) == len(CONFIGS)
    for (expected, expected_losses), (model, losses) in zip(one_at_a_time, recorded["results"], strict=True):
        assert model.lora_config == expected.lora_config
        assert type(model.linear2).__name__ == type(expected.linear2).__name__  # LoRALinear for "wrapper"
        assert len(losses) == len(expected_losses) == COMMON["steps"]
        assert all(isinstance(loss, float) for loss in losses)
        assert_identity(torch.tensor(losses, dtype=torch.float64), torch.tensor(expected_losses, dtype=torch.float64))
        state, expected_state = model.state_dict(), expected.state_dict()
        assert state.keys() == expected_state.keys()
        for key, value in expected_state.items():
            assert_identity(state[key], value)
        assert_identity(model(x), expected(x))
        assert model.training == expected.training
        for (_, lora), (_, expected_lora) in zip(lorautil.lora_layers(model), lorautil.lora_layers(expected),
                                                 strict=True):
            assert_identity(lora.lora_A.grad, expected_lora.lora_A.grad)  # the last step's, as finetune leaves
            assert_identity(lora.lora_B.grad, expected_lora.lora_B.grad)


def test_stacked_a_is_finetunes_initial_a_bit_for_bit_and_b_and_padding_start_at_zero(base, data, recorded):
    initial = [lorautil.trainable_copy(base, **{k: v for k, v in config.items() if k != "lr"})
               for config in CONFIGS]
    # The stack holds the models reordered (same lr and ranks side by side): find each one's config.
    stacked, models = recorded["stacked"], recorded["models"]
    results = [model for model, _ in recorded["results"]]
    position = [results.index(model) for model in models]  # stack position -> index in CONFIGS
    assert sorted(position) == list(range(len(CONFIGS))) and position != sorted(position)
    for name, _ in stacked_layers(stacked):
        lora_A, lora_B = recorded["initial"][f"{name}.lora_A"], recorded["initial"][f"{name}.lora_B"]
        for k, rank in enumerate(ranks_in_stack(models, name)):
            fresh = dict(lorautil.lora_layers(initial[position[k]]))
            if rank:
                assert torch.equal(lora_A[k, :rank], fresh[name].lora_A)
            assert not lora_A[k, rank:].any() and not lora_B[k].any()


def test_padding_gets_zero_gradients_and_stays_exactly_zero(recorded, data):
    stacked, models = recorded["stacked"], recorded["models"]
    stacked.zero_grad(set_to_none=True)
    x = data.images[:len(models) * 10].double()
    F.cross_entropy(stacked(x), data.labels[:len(models) * 10]).backward()
    checked = 0
    for name, layer in stacked_layers(stacked):
        for k, rank in enumerate(ranks_in_stack(models, name)):
            for tensor in (layer.lora_A, layer.lora_A.grad):
                assert not tensor[k, rank:].any()
            for tensor in (layer.lora_B, layer.lora_B.grad):
                assert not tensor[k, :, rank:].any()
            checked += rank < layer.lora_A.shape[1]
        assert layer.lora_A.grad.any() and layer.lora_B.grad.any()
    assert checked >= 5  # padding or rank-0 models were there to check


def test_flat_adam_is_torch_adam_per_slice_bit_for_bit():
    for dtype in (torch.float32, torch.float64):
        generator = torch.Generator().manual_seed(0)
        ranks, lrs = [4, 4, 2, 0, 3], [1e-3, 1e-3, 3e-2, 1e-3, 1e-4]
        stacked = torch.zeros(5, 4, 7, dtype=dtype)
        for i, rank in enumerate(ranks):
            stacked[i, :rank] = torch.randn(rank, 7, generator=generator, dtype=dtype)
        stacked.requires_grad_()
        slots = [(stacked, (slice(0, 2), slice(0, 4)), 1e-3), (stacked, (2, slice(0, 2)), 3e-2),
                 (stacked, (4, slice(0, 3)), 1e-4)]
        ours = FlatAdam(slots)
        singles = [stacked[i, :rank].detach().clone().requires_grad_() for i, rank in enumerate(ranks)]
        theirs = torch.optim.Adam([{"params": [p], "lr": lr} for p, lr in zip(singles, lrs, strict=True)])
        for step in range(30):
            grad = torch.randn(stacked.shape, generator=generator, dtype=dtype) * 10.0 ** (step % 7 - 4)
            stacked.grad = grad
            for p, g, rank in zip(singles, grad, ranks, strict=True):
                p.grad = g[:rank].clone()
            ours.step()
            theirs.step()
        for i, rank in enumerate(ranks):
            assert torch.equal(stacked[i, :rank], singles[i])
            assert not stacked[i, rank:].any()  # left alone, though its gradient was not zero here


def test_a_vision_transformer_with_linear_targets_also_matches(data, assert_identity):
    torch.manual_seed(0)
    vit = lorautil.float64_copy(lorautil.DigitsViT(dim=16, depth=1, heads=2, hidden=32))
    configs = [{"r": 2, "target_modules": ["q_proj", "head"]}, {"r": 3, "seed": 1, "target_modules": ["fc1"]}]
    common = {"steps": 4, "batch_size": 5, "digits": None}
    x = data.images[:8].double()
    for (expected, _), (model, _) in zip([finetune(vit, data, **common, **c) for c in configs],
                                         finetune_many(vit, data, configs, **common), strict=True):
        assert_identity(model(x), expected(x))


def test_float32_runs_agree_to_float32_rounding(data):
    torch.manual_seed(0)
    base = lorautil.DigitsNet()
    configs = CONFIGS[:3]
    for (expected, expected_losses), (model, losses) in zip([finetune(base, data, **COMMON, **c) for c in configs],
                                                            finetune_many(base, data, configs, **COMMON),
                                                            strict=True):
        assert lorautil.model_dtype(model) == torch.float32
        assert max(abs(a - b) for a, b in zip(losses, expected_losses, strict=True)) < 1e-5
        assert lorautil.max_difference(model(data.images), expected(data.images)) < 1e-4


def test_results_merge_and_evaluate_as_usual(recorded, data, assert_identity):
    model, _ = recorded["results"][1]
    merged = lorautil.merge_lora(copy.deepcopy(model))
    assert not lorautil.has_lora(merged)
    assert_identity(merged(data.images.double()), model(data.images.double()))
    assert 0 <= lorautil.evaluate(model, data).accuracy <= 1


def test_progress_bars_and_no_configs(base, data, capsys):
    assert finetune_many(base, data, [], **COMMON) == []
    finetune_many(base, data, CONFIGS[:2], steps=2, progress=True)
    assert "Epoch 1 (2 adapters)" in capsys.readouterr().err


@pytest.mark.parametrize("config, message", [
    ({"r": None}, "r=None fully fine-tunes"),
    ({"r": None, "train_only": ["linear3"]}, "train_only"),
    ({"r": 2, "on_step": print}, "on_step"),
    ({"r": 2, "train_bias": True}, "train_bias"),
])
def test_what_cannot_be_stacked_is_refused_pointing_to_finetune(base, data, config, message):
    with pytest.raises(ValueError, match=message) as error:
        finetune_many(base, data, [{"r": 2}, config], **COMMON)
    assert "use finetune()" in str(error.value)


def test_conv_and_embedding_targets_dropout_and_batch_norm_are_refused(data):
    vit = lorautil.DigitsViT(dim=16, depth=1, heads=2, hidden=32)
    for target in ("patch_embed", "pos_embed"):
        with pytest.raises(ValueError, match="nn.Linear layers only; use finetune"):
            finetune_many(vit, data, [{"r": 2, "target_modules": [target]}], steps=1)
    for layer in (nn.Dropout(0.1), nn.BatchNorm1d(10)):
        model = nn.Sequential(nn.Linear(784, 10), layer)
        with pytest.raises(ValueError, match="use finetune"):
            finetune_many(model, data, [{"r": 2}], steps=1)


def test_unknown_methods_targets_and_options_are_refused(base, data):
    with pytest.raises(ValueError, match="method must be one of"):
        finetune_many(base, data, [{"r": 2, "method": "lora"}], steps=1)
    with pytest.raises(ValueError, match="unknown target module"):
        finetune_many(base, data, [{"r": 2, "target_modules": ["linear9"]}], steps=1)
    with pytest.raises(TypeError, match="unknown finetune options"):
        finetune_many(base, data, [{"r": 2, "rank": 4}], steps=1)
    with pytest.raises(TypeError, match="progress"):
        finetune_many(base, data, [{"r": 2, "progress": True}], steps=1)


@pytest.mark.parametrize("configs, common, message", [
    ([{"r": 2, "steps": 5}, {"r": 2, "steps": 6}], {}, "same steps"),
    ([{"r": 2, "batch_size": 5}, {"r": 2}], {"steps": 2}, "same batch_size"),
    ([{"r": 2, "digits": [2, 3]}, {"r": 2}], {"steps": 2}, "same digits"),
    ([{"r": 2, "lr": 1e-3}], {"lr": 1e-2}, "either in the configs or as a keyword"),
])
def test_options_that_must_be_common_are_checked(base, data, configs, common, message):
    with pytest.raises(ValueError, match=message):
        finetune_many(base, data, configs, **common)


def test_common_options_may_also_be_repeated_equally_in_every_config(base, data):
    configs = [{"r": 2, "steps": 3, "digits": [2, 3]}, {"r": 1, "steps": 3, "digits": (2, 3)}]
    assert [len(losses) for _, losses in finetune_many(base, data, configs)] == [3, 3]


@pytest.mark.parametrize("variant", [{"use_dora": True}, {"init": "pissa"}])
def test_dora_and_pissa_are_refused_rather_than_trained_as_plain_lora(variant):
    base = lorautil.DigitsNet(relu_between=True)
    data = lorautil.MNISTTensors(torch.randn(40, 784), torch.randint(0, 10, (40,)))
    with pytest.raises(ValueError, match="DoRA and PiSSA"):
        lorautil.finetune_many(base, data, [{"r": 2, **variant}], steps=2, batch_size=10, digits=None)
