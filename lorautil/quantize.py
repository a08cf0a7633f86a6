"""QLoRA's idea: a frozen base weight in 4-bit NormalFloat (NF4) blocks under a trainable adapter (notebook 12)."""
from dataclasses import dataclass

import torch

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
