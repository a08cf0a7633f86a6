"""QLoRA's idea: a frozen base weight in 4-bit NormalFloat (NF4) blocks under a trainable adapter (notebook 12)."""
from dataclasses import dataclass

import torch
from torch import nn

# The 16 NF4 levels of the QLoRA paper (Dettmers et al. 2023, arXiv 2305.14314, Appendix E), as bitsandbytes
# stores them: quantiles of N(0, 1) scaled to [-1, 1], with an exact zero.
NF4_LEVELS = (
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0,
)


@dataclass
class NF4Tensor:
    """A weight as 4-bit indices into NF4_LEVELS, two per byte, and one float32 absmax per block (notebook 12)."""

    packed: torch.Tensor   # uint8, two 4-bit indices per byte
    absmax: torch.Tensor   # float32, one per block
    shape: torch.Size
    block_size: int

    @property
    def nbytes(self):
        """Bytes stored: the packed indices plus the absmax values."""
        return self.packed.numel() * self.packed.element_size() + self.absmax.numel() * self.absmax.element_size()

    def indices(self):
        """The 4-bit level index of every weight, unpacked, flat."""
        pairs = torch.stack([self.packed >> 4, self.packed & 0x0F], dim=1).flatten()
        return pairs[: self.shape.numel()].long()

    def dequantize(self, dtype=torch.float32):
        """level x block absmax for every weight, in the original shape."""
        levels = torch.tensor(NF4_LEVELS, dtype=dtype, device=self.packed.device)
        values = levels[self.indices()]
        padded = torch.nn.functional.pad(values, (0, self.absmax.numel() * self.block_size - values.numel()))
        return (padded.view(-1, self.block_size) * self.absmax.to(dtype)[:, None]).flatten()[: values.numel()] \
            .view(self.shape)


def quantize_nf4(weight, block_size=64):
    """Round every weight to the nearest NF4 level after dividing its block by the block's absmax (notebook 12)."""
    if block_size < 1:
        raise ValueError(f"block_size must be at least 1, got {block_size}")
    flat = weight.detach().flatten().float()
    padding = -flat.numel() % block_size
    blocks = torch.nn.functional.pad(flat, (0, padding)).view(-1, block_size)
    absmax = blocks.abs().amax(dim=1)
    scaled = blocks / absmax.clamp(min=torch.finfo(torch.float32).tiny)[:, None]  # an all-zero block stays zero
    levels = torch.tensor(NF4_LEVELS, device=flat.device)
    midpoints = (levels[1:] + levels[:-1]) / 2
    indices = torch.bucketize(scaled.flatten(), midpoints).to(torch.uint8)  # nearest level
    if indices.numel() % 2:
        indices = torch.cat([indices, indices.new_zeros(1)])
    packed = (indices[0::2] << 4) | indices[1::2]
    return NF4Tensor(packed, absmax, weight.shape, block_size)


class _NF4MatMul(torch.autograd.Function):
    """x @ W.T with W dequantized on the fly in forward and again in backward, so no float copy of W is kept
    for backward (what bitsandbytes' 4-bit matmul does for QLoRA)."""

    @staticmethod
    def forward(ctx, x, layer):
        ctx.layer = layer
        return x @ layer.dequantized(x.dtype).T

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output @ ctx.layer.dequantized(grad_output.dtype), None


class NF4Linear(nn.Linear):
    """A frozen nn.Linear whose weight is stored in NF4 (4-bit indices and one absmax per block) (notebook 12).

    It is an nn.Linear to add_lora (LoRA wraps it like any Linear: method="wrapper"), but its weight is
    computed, not stored: reading `.weight` dequantizes it, and writing it (a merge) is refused, since a
    4-bit weight cannot hold a small update (QLoRA keeps the adapter beside the quantized weight).
    """

    def __init__(self, linear, block_size=64):
        nn.Module.__init__(self)  # not nn.Linear's: no float weight Parameter is made
        self.in_features, self.out_features, self.block_size = linear.in_features, linear.out_features, block_size
        quantized = quantize_nf4(linear.weight, block_size)
        self.register_buffer("packed", quantized.packed)
        self.register_buffer("absmax", quantized.absmax)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)

    def nf4(self):
        """The stored weight as an NF4Tensor."""
        shape = torch.Size((self.out_features, self.in_features))
        return NF4Tensor(self.packed, self.absmax, shape, self.block_size)

    def dequantized(self, dtype=torch.float32):
        """The weight as the forward pass uses it: each level times its block's absmax."""
        return self.nf4().dequantize(dtype)

    @property
    def weight(self):
        return self.dequantized()

    @weight.setter
    def weight(self, value):
        raise AttributeError("an NF4Linear's weight is stored in 4 bits and cannot be written (merging an adapter "
                             "into it would round the update away): keep the adapter separate (method='wrapper'), "
                             "or merge into a float copy made with dequantize_model()")

    @weight.deleter
    def weight(self):
        raise AttributeError("an NF4Linear has no weight Parameter to parametrize: add LoRA to it with "
                             "method='wrapper', as QLoRA does")

    def forward(self, x):
        output = _NF4MatMul.apply(x, self)
        return output if self.bias is None else output + self.bias

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, NF4 blocks of {self.block_size}"


def quantize_model(model, block_size=64):
    """Replace every nn.Linear of `model` by a frozen NF4Linear, as QLoRA stores its base model (notebook 12)."""
    targets = [name for name, m in model.named_modules() if type(m) is nn.Linear]
    if not targets:
        raise ValueError("the model has no nn.Linear layers to quantize (add LoRA after quantizing, not before)")
    for name in targets:
        model.set_submodule(name, NF4Linear(model.get_submodule(name), block_size))
    model.requires_grad_(False)
    return model


def dequantize_model(model):
    """A float32 model again: every NF4Linear replaced by an nn.Linear holding its dequantized weight (notebook 12)."""
    for name, layer in list(model.named_modules()):
        if isinstance(layer, NF4Linear):
            linear = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None,
                               device=layer.packed.device)
            with torch.no_grad():
                linear.weight.copy_(layer.dequantized())
                if layer.bias is not None:
                    linear.bias.copy_(layer.bias)
            model.set_submodule(name, linear.requires_grad_(False))
    return model
