"""Two more MNIST models for LoRA beyond Linear layers: a small vision transformer and a small CNN,
with their pre-training recipes and saved base models (notebooks 09 and 10)."""
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .data import DATA_DIR, batches, load_mnist
from .model import save_state
from .training import default_device, train


class Attention(nn.Module):
    """Multi-head self-attention with its four projections as named nn.Linear layers (notebook 09)."""

    def __init__(self, dim, heads):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} must be a multiple of heads={heads}")
        self.heads = heads
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x):
        batch, tokens, dim = x.shape

        def split_heads(t):  # (batch, tokens, dim) -> (batch, heads, tokens, dim / heads)
            return t.view(batch, tokens, self.heads, dim // self.heads).transpose(1, 2)

        q, k, v = split_heads(self.q_proj(x)), split_heads(self.k_proj(x)), split_heads(self.v_proj(x))
        mixed = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(d_head)) v, per head
        return self.out_proj(mixed.transpose(1, 2).reshape(batch, tokens, dim))


class MLP(nn.Module):
    """The transformer block's feed-forward part: fc1, GELU, fc2 (notebook 09)."""

    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """A pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x)) (notebook 09)."""

    def __init__(self, dim, heads, hidden):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim), MLP(dim, hidden)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class DigitsViT(nn.Module):
    """A vision transformer for 28x28 digits: 7x7 patches, a class token, learned positions (notebook 09).

    patch_embed is an nn.Conv2d (kernel = stride = patch) and pos_embed an nn.Embedding over the
    17 positions, so the model holds all three layer types LoRA adapts: Linear, Conv2d, Embedding.
    """

    def __init__(self, dim=64, depth=2, heads=4, hidden=128, patch=7):
        super().__init__()
        self.patch, self.tokens = patch, (28 // patch) ** 2 + 1
        self.patch_embed = nn.Conv2d(1, dim, kernel_size=patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Embedding(self.tokens, dim)
        self.blocks = nn.ModuleList(Block(dim, heads, hidden) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 10)
        nn.init.normal_(self.pos_embed.weight, std=0.02)  # small, as in ViT: positions start nearly equal

    def forward(self, x):
        patches = self.patch_embed(x.reshape(-1, 1, 28, 28)).flatten(2).transpose(1, 2)  # (batch, 16, dim)
        x = torch.cat([self.cls_token.expand(len(patches), -1, -1), patches], dim=1)
        x = x + self.pos_embed(torch.arange(self.tokens, device=x.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x[:, 0]))  # classify from the class token


class DigitsCNN(nn.Module):
    """Two 3x3 convolutions with max-pooling, then a Linear classifier (notebook 10)."""

    def __init__(self, channels=(16, 32)):
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels[0], kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(channels[0], channels[1], kernel_size=3, padding=1)
        self.fc = nn.Linear(channels[1] * 7 * 7, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x.reshape(-1, 1, 28, 28))), 2)  # 28x28 -> 14x14
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # 14x14 -> 7x7
        return self.fc(x.flatten(1))


# Each model's recipe: built from seed 0, trained with Adam on shuffled batches of the training set.
RECIPES = {
    "vit": {"build": DigitsViT, "epochs": 4, "batch_size": 64, "lr": 2e-3},
    "cnn": {"build": DigitsCNN, "epochs": 1, "batch_size": 64, "lr": 2e-3},
}


def _recipe(name):
    if name not in RECIPES:
        raise ValueError(f"unknown model {name!r}: choose from {sorted(RECIPES)}")
    return RECIPES[name]


def pretrained_path(name, root=DATA_DIR):
    """Where the pre-trained "vit" or "cnn" base model is saved (notebook 09)."""
    _recipe(name)
    return Path(root) / f"digits{name}_base.pt"


def pretrain_model(name, train_set=None, progress=True):
    """Train "vit" or "cnn" by its recipe on the CPU from seed 0; returns (model, per-step losses) (notebook 09)."""
    recipe = _recipe(name)
    if train_set is None:
        train_set = load_mnist(train=True)
    torch.manual_seed(0)
    model = recipe["build"]()
    losses = train(model, batches(train_set.to("cpu"), recipe["batch_size"], shuffle=True),
                   epochs=recipe["epochs"], lr=recipe["lr"], progress=progress)
    return model, losses


def load_pretrained(name, device=None, path=None, progress=True):
    """The pre-trained "vit" or "cnn" from its file under data/, trained and saved first if missing (notebook 09)."""
    build = _recipe(name)["build"]
    device = device or default_device()
    path = Path(path) if path is not None else pretrained_path(name)
    model = build()
    if path.exists():
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except Exception as error:
            raise RuntimeError(f"{path} is not a saved {build.__name__} ({error}); delete it and run "
                               "again to retrain it (under a minute on a CPU).") from error
    else:
        model, _ = pretrain_model(name, progress=progress)
        save_state(model, path)
    return model.to(device)
