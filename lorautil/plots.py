"""Plots the notebooks share: per-digit bars, digit grids, confusion matrices, loss curves (notebook 02)."""
import matplotlib.pyplot as plt
import torch

from .data import MNIST_MEAN, MNIST_STD


def to_pixels(images):
    """Undo the normalisation: (N, 784) tensors -> (N, 28, 28) values in [0, 1] (notebook 02)."""
    return (images.detach().cpu().reshape(-1, 28, 28) * MNIST_STD + MNIST_MEAN).clamp(0, 1)


def plot_per_digit(series, ylabel="wrong predictions", title=None, ax=None):
    """Grouped bars, one group per digit, one bar per named series of 10 numbers (notebook 02)."""
    ax = ax or plt.subplots(figsize=(8, 3.2))[1]
    width = 0.8 / len(series)
    for i, (label, values) in enumerate(series.items()):
        values = getattr(values, "wrong_counts", values)
        ax.bar([d + (i - (len(series) - 1) / 2) * width for d in range(10)], values, width, label=label)
    ax.set_xticks(range(10))
    ax.set_xlabel("digit")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if len(series) > 1:
        ax.legend(fontsize="small")
    return ax


def show_digits(images, titles=None, columns=12, size=1.0):
    """A grid of digit images with optional titles (notebook 02)."""
    pixels = to_pixels(images)
    rows = max(1, -(-len(pixels) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * size, rows * size * 1.15), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(pixels):
            ax.imshow(pixels[i].numpy(), cmap="gray_r")
            if titles is not None:
                ax.set_title(titles[i], fontsize=8)
    fig.tight_layout()
    return fig


def show_misclassified(dataset, result, count=24, columns=12):
    """The first `count` test images the model got wrong, titled 'true→predicted' (notebook 02)."""
    labels = dataset.labels.cpu()
    wrong = (result.predictions != labels).nonzero().flatten()[:count]
    titles = [f"{labels[i].item()}→{result.predictions[i].item()}" for i in wrong]
    return show_digits(dataset.images[wrong], titles, columns)


def plot_confusion(result, title="confusion matrix", ax=None):
    """The confusion matrix with counts written in the cells (notebook 02)."""
    ax = ax or plt.subplots(figsize=(4.6, 4.2))[1]
    matrix = result.confusion if hasattr(result, "confusion") else torch.as_tensor(result)
    ax.imshow(matrix.numpy(), cmap="Blues")
    for t in range(10):
        for p in range(10):
            value = matrix[t, p].item()
            if value:
                ax.text(p, t, value, ha="center", va="center", fontsize=8,
                        color="white" if value > matrix.max().item() / 2 else "black")
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return ax


def moving_average(values, window):
    """Mean of each run of `window` consecutive values (notebook 02)."""
    values = torch.as_tensor(values, dtype=torch.float64)
    window = max(1, min(window, len(values)))
    return values.unfold(0, window, 1).mean(dim=1)


def plot_losses(series, window=50, ax=None, title=None):
    """Training-loss curves smoothed over `window` steps, one per named list of losses (notebook 02)."""
    ax = ax or plt.subplots(figsize=(7, 3))[1]
    for label, losses in series.items():
        smooth = moving_average(losses, window)
        ax.plot(range(len(losses) - len(smooth) + 1, len(losses) + 1), smooth, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel(f"loss (mean of {window} steps)")
    if title:
        ax.set_title(title)
    if len(series) > 1:
        ax.legend(fontsize="small")
    return ax
