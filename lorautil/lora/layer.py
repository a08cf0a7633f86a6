"""The LoRA factors A and B, and the two ways of adding them to a Linear, Conv2d or Embedding layer
(notebooks 03, 04 and 10); DoRA's magnitude and PiSSA's init for Linear layers (notebook 12)."""
import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import INITS, lora_scaling

SUPPORTED_LAYERS = (nn.Linear, nn.Conv2d, nn.Embedding)

LINEAR_ONLY = ("DoRA (use_dora=True) and PiSSA (init='pissa') are supported for nn.Linear layers only here "
               "(PEFT also has DoRA for Conv and Embedding layers): target Linear layers only")


class LoRAFactors(nn.Module):
    """A (r, in) and B (out, r) with scaling alpha / r: the update scaling * B @ A, shaped like W (notebook 03).

    B starts at zero, so B @ A = 0. A starts random, named as in PEFT's init_lora_weights: "kaiming"
    (PEFT's default: kaiming-uniform, a = sqrt(5), i.e. U(-1/sqrt(in), 1/sqrt(in))), "gaussian"
    (PEFT's: N(0, 1/r), a standard deviation of 1/r), or "standard_normal" (the source documents' N(0, 1)).

    For a Conv2d, `kernel_size` gives A the kernel (r, in, kh, kw) and B a 1x1 one (out, r, 1, 1), as PEFT
    and loralib do. For an Embedding (`embedding=True`) the weight is (num_embeddings, dim), the transpose
    of a Linear's, and A (r, num_embeddings) starts at zero and B (dim, r) at N(0, 1), whatever `init`
    says, as in PEFT and loralib (notebook 10).

    init="pissa" leaves A and B at zero until pissa_init_(weight) sets them from the layer's weight.
    use_dora=True (Linear only) adds DoRA's magnitude m, one per output row, named lora_magnitude_vector
    as in PEFT; dora_init_(weight) sets it to the row norms of W + scaling * B @ A (notebook 12).
    """

    def __init__(self, in_features, out_features, r, alpha=1.0, init="kaiming", rslora=False,
                 kernel_size=(), embedding=False, use_dora=False):
        super().__init__()
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        if (use_dora or init == "pissa") and (kernel_size or embedding):
            raise ValueError(LINEAR_ONLY)
        self.lora_A = nn.Parameter(torch.empty(r, in_features, *kernel_size))
        self.lora_B = nn.Parameter(torch.zeros(out_features, r, *(1 for _ in kernel_size)))
        if embedding:
            nn.init.zeros_(self.lora_A)
            nn.init.normal_(self.lora_B)
        elif init == "kaiming":
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        elif init == "gaussian":
            nn.init.normal_(self.lora_A, mean=0.0, std=1 / r)
        elif init == "standard_normal":
            nn.init.normal_(self.lora_A, mean=0.0, std=1.0)
        else:  # "pissa": A and B come from the weight's SVD in pissa_init_
            nn.init.zeros_(self.lora_A)
        self.r, self.alpha, self.scaling = r, alpha, lora_scaling(r, alpha, rslora)
        if use_dora:
            self.lora_magnitude_vector = nn.Parameter(torch.ones(out_features))
        else:
            self.register_parameter("lora_magnitude_vector", None)
        self.embedding = embedding
        self.enabled = True

    def delta_weight(self):
        """The update scaling * B @ A, shaped like the weight: (out, in), (out, in, kh, kw) or (num, dim)."""
        update = (self.lora_B.flatten(1) @ self.lora_A.flatten(1)) * self.scaling
        if self.embedding:
            return update.T
        return update.view(self.lora_B.shape[0], *self.lora_A.shape[1:])

    @property
    def use_dora(self):
        """True when the adapter is DoRA's: a trained magnitude per output row (notebook 12)."""
        return self.lora_magnitude_vector is not None

    def dora_norm(self, weight):
        """||W + scaling * B @ A|| per output row, detached from the gradient (DoRA section 4.3) (notebook 12)."""
        return torch.linalg.norm(weight.detach() + self.delta_weight().detach(), dim=1)

    def dora_weight(self, weight):
        """DoRA's weight m * (W + scaling * B @ A) / ||W + scaling * B @ A||, the norm per output row (notebook 12).

        Liu et al. 2024, eq. 2 and 5: W' = m * V / ||V||; as in their section 4.3 and PEFT, the norm is a
        constant for the gradient, so gradients reach m, A and B but not through ||V||.
        """
        return (self.lora_magnitude_vector / self.dora_norm(weight))[:, None] * (weight + self.delta_weight())

    @torch.no_grad()
    def dora_init_(self, weight):
        """m <- the row norms of W + scaling * B @ A, so that DoRA starts at the layer's own weight (notebook 12)."""
        self.lora_magnitude_vector.copy_(self.dora_norm(weight))

    @torch.no_grad()
    def pissa_init_(self, weight):
        """PEFT's init_lora_weights="pissa": A, B from W's top-r SVD, W <- the residual, in place (notebook 12).

        Meng et al. 2024: with W = U S Vh and S_r = S[:r] / scaling, A = sqrt(S_r) Vh[:r] and
        B = U[:, :r] sqrt(S_r), so scaling * B @ A is W's best rank-r part, and W becomes
        W - scaling * B @ A: the adapted layer starts equal to the original up to rounding. The SVD runs
        in float64 for a float64 weight, otherwise in float32 as in PEFT (which refuses float64).
        """
        if self.embedding or self.lora_A.dim() != 2:
            raise ValueError(LINEAR_ONLY)
        if self.r > min(weight.shape):
            raise ValueError(f"PiSSA takes the top r={self.r} singular directions of a {tuple(weight.shape)} "
                             f"weight, which has only {min(weight.shape)}: choose r <= {min(weight.shape)}")
        work = weight.detach().to(torch.float64 if weight.dtype == torch.float64 else torch.float32)
        U, S, Vh = torch.linalg.svd(work, full_matrices=False)
        root = (S[:self.r] / self.scaling).sqrt()
        lora_A, lora_B = root[:, None] * Vh[:self.r], U[:, :self.r] * root
        self.lora_A.copy_(lora_A)
        self.lora_B.copy_(lora_B)
        weight.copy_(work - (self.scaling * lora_B) @ lora_A)

    def extra_repr(self):
        dora = ", use_dora=True" if self.use_dora else ""
        return f"r={self.r}, alpha={self.alpha}, scaling={self.scaling:g}, enabled={self.enabled}{dora}"


def check_variant(name, layer, use_dora, init):
    """Raise a clear error if DoRA or PiSSA is asked for on a layer other than an nn.Linear (notebook 12)."""
    if (use_dora or init == "pissa") and not isinstance(layer, nn.Linear):
        raise ValueError(f"{name!r} is a {type(layer).__name__}: {LINEAR_ONLY}")


def check_supported(name, layer):
    """Raise a clear error for a layer LoRA cannot adapt here, saying what to do instead (notebook 10)."""
    if not isinstance(layer, SUPPORTED_LAYERS):
        raise TypeError(f"target {name!r} is a {type(layer).__name__}: LoRA here adapts nn.Linear, nn.Conv2d "
                        "and nn.Embedding layers; target those inside it instead")
    if isinstance(layer, nn.Conv2d):
        if layer.groups != 1:
            raise ValueError(f"{name!r} is a grouped convolution (groups={layer.groups}): B @ A would not have "
                             "its weight's shape, so the update could not be merged. Target an ungrouped "
                             "convolution (PEFT adapts these only when groups divides r, and cannot merge them).")
        if layer.dilation != (1, 1) or layer.padding_mode != "zeros":
            raise ValueError(f"{name!r} uses dilation={layer.dilation}, padding_mode={layer.padding_mode!r}: "
                             "LoRA here (as in PEFT) supports dilation 1 and zero padding only")
    if isinstance(layer, nn.Embedding) and layer.max_norm is not None:
        raise ValueError(f"{name!r} renormalises its rows (max_norm={layer.max_norm}) in place on every "
                         "lookup, which LoRA's update cannot follow; use an Embedding without max_norm")


def layer_shape(layer):
    """(in_features, out_features, kernel_size, embedding): the geometry of A and B for `layer` (notebook 10)."""
    if isinstance(layer, nn.Conv2d):
        return layer.in_channels, layer.out_channels, tuple(layer.kernel_size), False
    if isinstance(layer, nn.Embedding):
        return layer.num_embeddings, layer.embedding_dim, (), True
    return layer.in_features, layer.out_features, (), False


class LoRAParametrization(LoRAFactors):
    """Maps a weight W to W + scaling * B @ A, for parametrize (notebook 03)."""

    @classmethod
    def for_layer(cls, layer, r, alpha=1.0, init="kaiming", rslora=False, use_dora=False):
        """A parametrization shaped for a Linear, Conv2d or Embedding `layer` (notebook 10)."""
        in_features, out_features, kernel_size, embedding = layer_shape(layer)
        return cls(in_features, out_features, r, alpha, init, rslora, kernel_size, embedding, use_dora)

    def forward(self, weight):
        if not self.enabled:
            return weight
        if self.use_dora:
            return self.dora_weight(weight)
        return weight + self.delta_weight()


class LoRAWrapper(LoRAFactors):
    """A frozen layer plus a LoRA branch: base(x) + branch(x); merge() folds the branch into the weight (notebook 04).

    merge() makes the layer cost what the plain layer costs; unmerge() takes the update out again.
    """

    def __init__(self, base, r, alpha=1.0, init="kaiming", rslora=False, use_dora=False):
        in_features, out_features, kernel_size, embedding = layer_shape(base)
        super().__init__(in_features, out_features, r, alpha, init, rslora, kernel_size, embedding, use_dora)
        self.base = base
        self.merged = False
        # DoRA: the norm ||W + scaling * B @ A|| of the unmerged weight, kept while merged for unmerge().
        self.register_buffer("merged_norm", None, persistent=False)

    def forward(self, x):
        if self.merged or not self.enabled:
            return self.base(x)
        return self.base(x) + self.branch(x)

    def branch(self, x):
        """What the adapter adds to base(x)."""
        raise NotImplementedError

    def extra_repr(self):
        return f"{super().extra_repr()}, merged={self.merged}"

    @torch.no_grad()
    def merge(self):
        """W <- W + scaling * B @ A (DoRA: m * (W + scaling * B @ A) / norm); the layer then costs what the plain
        layer costs."""
        if self.merged:
            return
        if self.use_dora:
            self.merged_norm = self.dora_norm(self.base.weight)
            scale = self.lora_magnitude_vector / self.merged_norm
            self.base.weight.copy_(scale[:, None] * (self.base.weight + self.delta_weight()))
        else:
            self.base.weight += self.delta_weight()
        self.merged = True

    @torch.no_grad()
    def unmerge(self):
        """W <- W - scaling * B @ A (DoRA: W / (m / norm) - scaling * B @ A): the base weight again, up to rounding."""
        if not self.merged:
            return
        if self.use_dora:
            scale = self.lora_magnitude_vector / self.merged_norm
            self.base.weight.copy_(self.base.weight / scale[:, None] - self.delta_weight())
            self.merged_norm = None
        else:
            self.base.weight -= self.delta_weight()
        self.merged = False


class LoRALinear(LoRAWrapper):
    """An nn.Linear plus a LoRA branch: base(x) + scaling * x @ A.T @ B.T (notebook 04).

    With use_dora=True, as PEFT's DoRA forward: base(x) + (m / norm - 1) * x @ W.T + (m / norm) * branch(x),
    with norm = ||W + scaling * B @ A|| per output row, detached; the bias is unchanged (notebook 12).
    """

    def forward(self, x):
        if self.merged or not self.enabled or not self.use_dora:
            return super().forward(x)
        result = self.base(x)
        scale = self.lora_magnitude_vector / self.dora_norm(self.base.weight)
        without_bias = result if self.base.bias is None else result - self.base.bias
        return result + (scale - 1) * without_bias + scale * self.branch(x)

    def branch(self, x):
        return (x @ self.lora_A.T @ self.lora_B.T) * self.scaling


class LoRAConv2d(LoRAWrapper):
    """An nn.Conv2d plus a LoRA branch: A, a conv to r channels with the layer's kernel, stride and padding,
    then B, a 1x1 conv to the output channels (notebook 10)."""

    def branch(self, x):
        hidden = F.conv2d(x, self.lora_A, stride=self.base.stride, padding=self.base.padding)
        return F.conv2d(hidden, self.lora_B) * self.scaling


class LoRAEmbedding(LoRAWrapper):
    """An nn.Embedding plus a LoRA branch: row x of A.T (a lookup, r numbers), then B (notebook 10)."""

    def branch(self, x):
        hidden = F.embedding(x, self.lora_A.T, padding_idx=self.base.padding_idx)
        return (hidden @ self.lora_B.T) * self.scaling


WRAPPERS = ((nn.Linear, LoRALinear), (nn.Conv2d, LoRAConv2d), (nn.Embedding, LoRAEmbedding))


def wrap(layer, r, alpha=1.0, init="kaiming", rslora=False, use_dora=False):
    """The LoRA wrapper for a Linear, Conv2d or Embedding `layer` (notebook 10)."""
    wrapper = next(cls for layer_type, cls in WRAPPERS if isinstance(layer, layer_type))
    return wrapper(layer, r, alpha, init, rslora, use_dora)


def base_layer(module):
    """The layer itself, or the one inside a LoRA wrapper (notebook 04)."""
    return module.base if isinstance(module, LoRAWrapper) else module
