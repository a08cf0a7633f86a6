"""Device choice, the training loop and evaluation (notebook 02)."""
import copy
import math
import os
from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm as text_tqdm
from tqdm.auto import tqdm as auto_tqdm

from .data import FINETUNE_DIGITS, OTHER_DIGITS, batches
from .lora import add_lora
from .optim import FlatAdam

DEVICE_VARIABLE = "LORAUTIL_DEVICE"
# lorautil.tqdm: JupyterLab draws tqdm.auto as a widget; `make run` sets LORAUTIL_TEXT_PROGRESS so that committed
# notebooks show text bars, which read well on GitHub (a widget needs its saved state to show there).
tqdm = text_tqdm if os.environ.get("LORAUTIL_TEXT_PROGRESS") else auto_tqdm


def default_device():
    """cuda, else mps, else cpu; $LORAUTIL_DEVICE overrides (notebook 02)."""
    if os.environ.get(DEVICE_VARIABLE):
        return torch.device(os.environ[DEVICE_VARIABLE])
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def model_device(model):
    """The device of the model's first parameter (notebook 02)."""
    return next(model.parameters()).device


def model_dtype(model):
    """The dtype of the model's first parameter: float32, or float64 for identity checks (notebook 03)."""
    return next(model.parameters()).dtype


def train(model, batches, epochs=1, limit=None, lr=1e-3, progress=True, on_step=None, optimizer=None):
    """Cross-entropy + Adam over the trainable parameters (FlatAdam); returns the per-step losses (notebook 02).

    `limit` stops after that many steps in total (the documents' 200-step fine-tune); the bar shows
    the running mean loss of the epoch, as in the documents; on_step(step, loss) runs after each step.
    """
    if limit is not None and limit > epochs * len(batches):
        raise ValueError(f"limit={limit} steps needs epochs >= {math.ceil(limit / len(batches))} "
                         f"({len(batches)} batches per epoch); got epochs={epochs}")
    device, dtype = model_device(model), model_dtype(model)
    loss_fn = nn.CrossEntropyLoss()
    if optimizer is None:
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the model has no trainable parameters: unfreeze some or add LoRA first")
        # torch.optim.Adam(params, lr)'s update bit for bit, in fewer calls per step (lorautil.optim).
        one_kind = len({(p.dtype, p.device) for p in params}) == 1
        optimizer = FlatAdam.over(params, lr) if one_kind else torch.optim.Adam(params, lr=lr)
    model.train()
    losses = []
    for epoch in range(epochs):
        total = min(len(batches), limit - len(losses)) if limit else len(batches)
        epoch_sum, epoch_steps = 0.0, 0
        with tqdm(total=total, desc=f"Epoch {epoch + 1}", disable=not progress) as bar:
            for x, y in batches:
                x, y = x.to(device, dtype, non_blocking=True), y.to(device, non_blocking=True)
                optimizer.zero_grad()
                loss = loss_fn(model(x), y)
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
                epoch_sum, epoch_steps = epoch_sum + losses[-1], epoch_steps + 1
                bar.set_postfix(loss=epoch_sum / epoch_steps, refresh=False)
                bar.update()
                if on_step is not None:
                    on_step(len(losses), losses[-1])
                if limit is not None and len(losses) >= limit:
                    return losses
    return losses


@dataclass
class EvalResult:
    """Accuracy, per-digit counts, confusion matrix and predictions on a test set (notebook 02)."""

    accuracy: float
    per_digit_accuracy: list
    wrong_counts: list
    confusion: torch.Tensor  # confusion[true, predicted]
    predictions: torch.Tensor

    def accuracy_on(self, digits):
        """Accuracy over the test images whose true label is in `digits`."""
        digits = list(digits)
        correct = sum(self.confusion[d, d].item() for d in digits)
        return correct / self.confusion[digits].sum().item()

    def by_group(self):
        """{"fine": accuracy on FINETUNE_DIGITS, "other": on OTHER_DIGITS, "overall": on all} (notebook 03)."""
        return {"fine": self.accuracy_on(FINETUNE_DIGITS), "other": self.accuracy_on(OTHER_DIGITS),
                "overall": self.accuracy}

    def __repr__(self):
        return (f"EvalResult(accuracy={self.accuracy:.4f}, wrong_counts={self.wrong_counts})")


@torch.no_grad()
def predict(model, images, batch_size=1000):
    """Predicted digit for each image: the first index of the largest output, as torch.argmax (notebook 02)."""
    device, dtype = model_device(model), model_dtype(model)
    was_training = model.training
    model.eval()
    chunks = [model(images[i:i + batch_size].to(device, dtype)).argmax(dim=1).cpu()
              for i in range(0, len(images), batch_size)]
    model.train(was_training)
    return torch.cat(chunks)


def evaluate(model, dataset, batch_size=1000):
    """Accuracy, per-digit accuracy, per-digit wrong counts and confusion matrix (notebook 02)."""
    predictions = predict(model, dataset.images, batch_size)
    labels = dataset.labels.cpu()
    confusion = torch.zeros(10, 10, dtype=torch.long)
    confusion.index_put_((labels, predictions), torch.ones_like(labels), accumulate=True)
    per_digit = confusion.sum(dim=1)
    correct = confusion.diagonal()
    return EvalResult(
        accuracy=correct.sum().item() / len(labels),
        per_digit_accuracy=(correct / per_digit.clamp(min=1)).tolist(),
        wrong_counts=(per_digit - correct).tolist(),
        confusion=confusion,
        predictions=predictions,
    )


# Learning rates to tune over, a factor of about 3 apart; choose on a validation split (notebook 05).
LEARNING_RATES = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)


def freeze_all_but(model, layers):
    """Make only the parameters of the named submodules trainable, e.g. ["linear3"] (notebook 05)."""
    modules = dict(model.named_modules())
    names = [layers] if isinstance(layers, str) else list(layers)
    unknown = [name for name in names if name not in modules or not name]
    if unknown or not names:
        choices = [name for name, m in modules.items() if name and any(True for _ in m.parameters(recurse=False))]
        raise ValueError(f"layers to train must name submodules of the model, got {names}; choose from {choices}")
    model.requires_grad_(False)
    for name in names:
        modules[name].requires_grad_(True)
    return model


def trainable_copy(base_model, r=None, seed=0, train_only=None, **lora_options):
    """A copy of `base_model` to train: every parameter, only the `train_only` layers, or LoRA at r (notebook 05).

    The seed comes first, so it fixes the LoRA initialisation and then the batch order drawn after it.
    """
    if train_only is not None and r is not None:
        raise ValueError("train_only fully trains the named layers and needs r=None; "
                         "to adapt only some layers with LoRA pass target_modules instead")
    model = copy.deepcopy(base_model)
    torch.manual_seed(seed)
    if r is not None:
        add_lora(model, r, **lora_options)
    elif train_only is not None:
        freeze_all_but(model, train_only)
    else:
        model.requires_grad_(True)
    return model


def finetune(base_model, train_set, r=None, steps=200, seed=0, digits=FINETUNE_DIGITS, lr=1e-3,
             batch_size=10, progress=False, train_only=None, on_step=None, **lora_options):
    """Fine-tune a trainable_copy of `base_model` on `digits` for `steps` steps; returns (model, losses) (notebook 03).

    r=None trains every parameter (full fine-tuning), or only the `train_only` layers; otherwise
    add_lora(model, r, **lora_options). digits=None trains on every label; on_step(step, loss) as in train().
    """
    model = trainable_copy(base_model, r, seed, train_only, **lora_options)
    data = batches(train_set, batch_size, shuffle=True, digits=digits)
    losses = train(model, data, epochs=math.ceil(steps / len(data)), limit=steps, lr=lr, progress=progress,
                   on_step=on_step)
    return model, losses
