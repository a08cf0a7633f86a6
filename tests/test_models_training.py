import itertools

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

import lorautil
from lorautil.reference import document_training, document_transform


def test_digitsnet_has_the_documents_parameter_count_and_relu_placement():
    model = lorautil.DigitsNet()
    assert lorautil.count_parameters(model) == 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10 == 235_146
    x = torch.randn(4, 784)
    with torch.no_grad():
        linear_only = model.linear3(model.linear2(model.linear1(x)))
        assert torch.equal(model(x), torch.relu(linear_only))
        conventional = lorautil.DigitsNet(relu_between=True)
        conventional.load_state_dict(model.state_dict())
        h = torch.relu(model.linear2(torch.relu(model.linear1(x))))
        assert torch.equal(conventional(x), model.linear3(h))


def test_documents_recipe_reproduces_their_numbers_exactly(train_set, test_set):
    model, losses = lorautil.pretrain(train_set=train_set, progress=False)
    assert len(losses) == 6000
    assert round(sum(losses) / len(losses), 2) == 0.72
    result = lorautil.evaluate(model, test_set)
    assert result.accuracy == 0.8906
    assert result.wrong_counts == [33, 12, 147, 115, 69, 196, 98, 91, 185, 148]


def first_batches(loader, count):
    """The first `count` batches, starting the loader's iterator (and its RNG draws) only when asked."""
    yield from itertools.islice(loader, count)  # islice alone would call iter(loader) right away


def test_in_memory_training_equals_the_dataloader_loop(train_set):
    """The first 300 steps of the documents' loop, with a DataLoader and from memory: same weights."""
    reference = lorautil.mnist_dataset(True, transform=document_transform())
    loader = DataLoader(reference, batch_size=10, shuffle=True)
    model = document_training(first_batches(loader, 300))  # seeds 0, builds the model, then iterates
    torch.manual_seed(0)
    ours = lorautil.DigitsNet()
    lorautil.train(ours, lorautil.batches(train_set, 10, shuffle=True), limit=300, progress=False)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, ours.state_dict()[name]), name


class Lookup(nn.Module):
    """Predicts preset classes: image i (its first pixel holds i) gets logits peaking at predictions[i]."""

    def __init__(self, predictions):
        super().__init__()
        self.predictions = predictions
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return nn.functional.one_hot(self.predictions[x[:, 0].long()], 10).float() + self.dummy


def test_evaluate_on_a_known_answer():
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 2, 9, 9, 9])
    predictions = torch.tensor([0, 1, 1, 1, 2, 0, 0, 9, 9, 3])
    images = torch.zeros(10, 784)
    images[:, 0] = torch.arange(10)
    result = lorautil.evaluate(Lookup(predictions), lorautil.MNISTTensors(images, labels), batch_size=3)
    assert result.accuracy == 0.6
    assert result.wrong_counts == [1, 0, 2, 0, 0, 0, 0, 0, 0, 1]
    assert result.per_digit_accuracy[:3] == [0.5, 1.0, pytest.approx(1 / 3)]
    assert result.per_digit_accuracy[9] == pytest.approx(2 / 3)
    assert result.confusion[2, 0] == 2 and result.confusion[9, 3] == 1 and result.confusion.sum() == 10
    assert result.accuracy_on([0, 1]) == 0.75
    assert torch.equal(result.predictions, predictions)


def test_evaluate_matches_the_documents_per_sample_argmax_loop(test_set):
    model = lorautil.load_base_model(device="cpu", progress=False)
    reference = lorautil.mnist_dataset(False, transform=document_transform())
    wrong, correct = [0] * 10, 0
    with torch.no_grad():
        for x, y in DataLoader(reference, batch_size=10):
            for output, label in zip(model(x.view(-1, 784)), y, strict=True):
                if torch.argmax(output) == label:
                    correct += 1
                else:
                    wrong[label] += 1
    result = lorautil.evaluate(model, test_set)
    assert result.wrong_counts == wrong
    assert result.accuracy == correct / 10000


def test_train_respects_limit_and_trains_only_what_requires_grad(train_set):
    torch.manual_seed(0)
    model = lorautil.DigitsNet()
    model.linear1.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    steps = []
    losses = lorautil.train(model, lorautil.batches(train_set, 10, True), epochs=3, limit=25,
                            progress=False, on_step=lambda step, loss: steps.append(step))
    assert len(losses) == 25 and steps == list(range(1, 26))
    after = model.state_dict()
    assert torch.equal(before["linear1.weight"], after["linear1.weight"])
    assert not torch.equal(before["linear2.weight"], after["linear2.weight"])
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        lorautil.train(model, lorautil.batches(train_set, 10, True), limit=1, progress=False)


def test_device_choice_prefers_cuda_then_mps_then_cpu_and_can_be_overridden(monkeypatch):
    monkeypatch.delenv("LORAUTIL_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert lorautil.default_device() == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert lorautil.default_device() == torch.device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert lorautil.default_device() == torch.device("cpu")
    monkeypatch.setenv("LORAUTIL_DEVICE", "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert lorautil.default_device() == torch.device("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_finetune_on_cuda_matches_the_cpu_in_float64(train_set, assert_identity):
    base = lorautil.DigitsNet().double()
    on_cpu, _ = lorautil.finetune(base, train_set, r=2, steps=20, seed=0)
    on_gpu, _ = lorautil.finetune(base.to("cuda"), train_set, r=2, steps=20, seed=0)
    x = train_set.images[:100].double()
    assert_identity(on_gpu(x.to("cuda")).cpu(), on_cpu(x))


def test_base_model_is_saved_atomically_and_reloaded(tmp_path, monkeypatch):
    model = lorautil.DigitsNet()
    path = tmp_path / "base.pt"
    lorautil.save_state(model, path)
    loaded = lorautil.load_base_model(path=path, device="cpu")
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name])

    def broken_save(obj, f):
        open(f, "wb").write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        lorautil.save_state(model, tmp_path / "other.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base.pt"]


def test_a_corrupt_base_model_file_says_how_to_fix_it(tmp_path):
    path = tmp_path / "base.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="delete it"):
        lorautil.load_base_model(path=path, device="cpu")


def test_finetune_trains_a_copy_and_full_finetuning_trains_everything(train_set):
    base = lorautil.DigitsNet()
    before = {k: v.clone() for k, v in base.state_dict().items()}
    tuned, losses = lorautil.finetune(base, train_set, r=None, steps=5)
    assert len(losses) == 5
    assert lorautil.count_parameters(tuned, trainable_only=True) == 235_146
    assert all(torch.equal(v, base.state_dict()[k]) for k, v in before.items())
    again, _ = lorautil.finetune(base, train_set, r=None, steps=5)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in tuned.state_dict().items())


def test_a_step_limit_beyond_the_epochs_is_refused(train_set):
    data = lorautil.batches(train_set, 10, True, digits=[0])
    with pytest.raises(ValueError, match="needs epochs >= 2"):
        lorautil.train(lorautil.DigitsNet(), data, epochs=1, limit=len(data) + 1, progress=False)


def torch_adam_losses(model, data, steps, lr):
    """The plain loop with torch.optim.Adam, as notebook 02 writes it."""
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for x, y in itertools.islice(data, steps):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x.to(lorautil.model_dtype(model))), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("lora", [dict(r=None), dict(r=4, method="wrapper", init="standard_normal", alpha=1.0),
                                  dict(r=2, method="parametrization"), dict(r=None, train_only=["linear3"])])
def test_train_with_flat_adam_is_torch_adam_bit_for_bit(train_set, dtype, lora):
    torch.manual_seed(0)
    base = lorautil.DigitsNet().to(dtype)
    data = lorautil.batches(train_set.first(4000), 10, shuffle=True)
    ours = lorautil.trainable_copy(base, seed=1, **lora)
    theirs = lorautil.trainable_copy(base, seed=1, **lora)
    torch.manual_seed(2)
    our_losses = lorautil.train(ours, data, limit=300, lr=3e-3, progress=False)
    torch.manual_seed(2)
    their_losses = torch_adam_losses(theirs, data, 300, lr=3e-3)
    assert our_losses == their_losses
    for (name, a), b in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        assert torch.equal(a, b), name


def test_flat_adam_refuses_a_step_without_gradients_and_mixed_dtypes():
    used, unused = nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(2))
    optimizer = lorautil.FlatAdam.over([used, unused], lr=0.1)
    (used * 2).sum().backward()
    with pytest.raises(RuntimeError, match="no gradient"):
        optimizer.step()
    with pytest.raises(ValueError, match="one dtype"):
        lorautil.FlatAdam.over([used, nn.Parameter(torch.ones(2, dtype=torch.float64))], lr=0.1)


def test_train_falls_back_to_torch_adam_for_mixed_dtypes(train_set):
    torch.manual_seed(0)
    model = lorautil.DigitsNet()
    model.linear3.double()
    model.linear3.register_forward_pre_hook(lambda module, args: (args[0].double(),))
    model.register_forward_hook(lambda module, args, out: out.float())
    losses = lorautil.train(model, lorautil.batches(train_set.first(100), 10, shuffle=True), progress=False)
    assert len(losses) == 10 and model.linear3.weight.dtype == torch.float64
