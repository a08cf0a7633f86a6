"""Checking that two computations of the same quantity agree: in float64, up to rounding (notebook 03).

Two correct ways of computing one thing (a merged and an unmerged layer, two LoRA methods, a save and
load) add the same products in different orders, so in float32 they differ in the last bits, and by
how much depends on the CPU's kernels. An identity is therefore checked in float64, where rounding is
about 2e-16 relative: a real mistake (a wrong scale, a transposed update) shows up as a difference
of order one, rounding as one below IDENTITY_RTOL.
"""
import copy

import torch

# Summing n products in float64 has a worst-case relative error of about n * 2.2e-16 (Higham,
# "Accuracy and Stability of Numerical Algorithms", 2nd ed., section 3.1); DigitsNet's reductions add
# at most 784 + 256 + 128 = 1,168 terms, about 2.6e-13, so 1e-10 leaves a margin of several hundred.
IDENTITY_RTOL = 1e-10


def max_difference(actual, expected):
    """The largest absolute difference between two tensors, as a Python float (notebook 03)."""
    return (actual.detach() - expected.detach()).abs().max().item()


def assert_identity(actual, expected, rtol=IDENTITY_RTOL):
    """Assert two float64 results agree to `rtol` of the largest |expected|; (difference, tolerance) (notebook 03)."""
    if actual.dtype != torch.float64 or expected.dtype != torch.float64:
        raise TypeError(f"check identities in float64 (got {actual.dtype} and {expected.dtype}): "
                        "float32 results differ in their last bits from CPU to CPU")
    if actual.shape != expected.shape:
        raise ValueError(f"shapes differ: {tuple(actual.shape)} vs {tuple(expected.shape)}")
    difference = max_difference(actual, expected)
    tolerance = rtol * max(expected.detach().abs().max().item(), 1.0)
    if not difference <= tolerance:
        raise AssertionError(f"not the same up to rounding: max difference {difference:.3e} > "
                             f"tolerance {tolerance:.3e} ({rtol:g} of the largest value)")
    return difference, tolerance


def float64_copy(model):
    """A float64 copy of `model` on the CPU, where float64 always exists, for identity checks (notebook 03)."""
    return copy.deepcopy(model).cpu().double()
