"""DigitsNet, the course's MNIST classifier, and the saved pre-trained base model (notebook 02)."""
from pathlib import Path

import torch
from torch import nn

from .data import DATA_DIR, batches, load_mnist
from .files import atomic_path
from .training import default_device, train

LINEAR_LAYERS = ("linear1", "linear2", "linear3")  # DigitsNet's Linear layers, input to output


class DigitsNet(nn.Module):
    """784 -> 256 -> 128 -> 10, as in the source documents (notebook 02).

    The documents apply one ReLU after the last layer and none between layers; relu_between=True
    gives the conventional network: a ReLU after each hidden layer and plain logits at the end.
    """

    def __init__(self, relu_between=False):
        super().__init__()
        self.relu_between = relu_between
        self.linear1 = nn.Linear(28 * 28, 256)
        self.linear2 = nn.Linear(256, 128)
        self.linear3 = nn.Linear(128, 10)
        self.relu = nn.ReLU()

    def forward(self, x):
        x = x.reshape(-1, 28 * 28)
        x = self.linear1(x)
        if self.relu_between:
            x = self.relu(x)
        x = self.linear2(x)
        if self.relu_between:
            return self.linear3(self.relu(x))
        return self.relu(self.linear3(x))


def count_parameters(model, trainable_only=False):
    """Number of parameters of `model` (optionally only those with requires_grad) (notebook 02)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def base_model_path(relu_between=False, root=DATA_DIR):
    """Where the pre-trained base model is saved (notebook 02)."""
    return Path(root) / ("digitsnet_base_relu.pt" if relu_between else "digitsnet_base.pt")


def save_state(model, path):
    """Save model.state_dict() atomically: a temporary file, then a rename (notebook 02)."""
    with atomic_path(path) as tmp:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)


def pretrain(relu_between=False, train_set=None, progress=True):
    """The documents' recipe: seed 0, DigitsNet, one epoch of Adam(1e-3) on batches of 10 (notebook 02).

    Returns (model, per-step losses). Reproduces the documents' numbers exactly on CPU.
    """
    if train_set is None:
        train_set = load_mnist(train=True)
    torch.manual_seed(0)
    model = DigitsNet(relu_between).to(train_set.images.device)
    losses = train(model, batches(train_set, 10, shuffle=True), epochs=1, progress=progress)
    return model, losses


def load_base_model(relu_between=False, device=None, path=None, progress=True):
    """The pre-trained DigitsNet from notebook 02's file, trained and saved first if missing (notebook 02)."""
    device = device or default_device()
    path = Path(path) if path is not None else base_model_path(relu_between)
    model = DigitsNet(relu_between)
    if path.exists():
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except Exception as error:
            raise RuntimeError(f"{path} is not a DigitsNet checkpoint ({error}); delete it and run "
                               "again to retrain the base model (about 15 s on a CPU).") from error
    else:
        # Train on the CPU, where the documents' numbers reproduce exactly, whatever `device` is.
        model, _ = pretrain(relu_between, progress=progress)
        save_state(model, path)
    return model.to(device)
