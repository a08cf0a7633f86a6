"""Checks for the exercises of notebook 13 (many adapters at once)."""
import torch

from ..lora import expected_lora_parameters
from ..model import LINEAR_LAYERS
from ..numerics import IDENTITY_RTOL, max_difference
from . import close, exercise


@exercise("13.1",
          "An adapter's branch does r·(in + out) multiply-adds per image in each layer (x·Aᵀ, then ·Bᵀ); the base "
          "layer does in·out.",
          "Sum over (784, 256), (256, 128) and (128, 10); at r_max = 64, cap_rank gives linear3 rank "
          "min(64, 10) = 10.")
def padding_macs(answer, base):
    """Forward multiply-adds per image: the base's layers, and the LoRA branch at r_max = 1 and 64 (capped)."""
    if not isinstance(answer, dict) or set(answer) != {"base", 1, 64}:
        return "give a dict with the keys 'base', 1 and 64"
    layers = [base.get_submodule(name) for name in LINEAR_LAYERS]
    if answer["base"] != sum(layer.in_features * layer.out_features for layer in layers):
        return f"{answer['base']:,} is not the base's multiply-adds per image (biases are additions only)"
    for r_max in (1, 64):
        # (in + out)·min(r, in, out) per layer: the parameters of a capped adapter, one multiply-add each
        expected = expected_lora_parameters(base, r_max)
        if answer[r_max] == r_max * sum(layer.in_features + layer.out_features for layer in layers) != expected:
            return f"r_max = {r_max}: linear3 has 10 outputs, and cap_rank gives it rank 10, not {r_max}"
        if answer[r_max] != expected:
            return f"r_max = {r_max}: {answer[r_max]:,} is not the LoRA branch's multiply-adds per image"
    return True


@exercise("13.2",
          "Sort the rows by adapter id (torch.argsort(ids, stable=True)); then adapter k's rows are one slice of "
          "the sorted batch.",
          "A subclass of MixedLoRALinear whose forward loops over segments (start, end) set on it by "
          "serve_segmented, adding scaling[k]·(x[start:end] @ A[k].T) @ B[k].T; serve_segmented writes the "
          "outputs back with out[order] = sorted_out.")
def segments(answer, base, models, mixed_server, gathered):
    """The segmented server gives each example its own adapter's output, as each group through its own model."""
    layer_class, serve = answer
    if layer_class is gathered:
        return "that is section 3's gathered layer: write one that multiplies a segment of rows at a time"
    server = mixed_server(base, models, layer_class)
    generator = torch.Generator().manual_seed(0)
    for ids in (torch.randint(len(models), (64,), generator=generator), torch.tensor([2, 0, 2, 1, 0])):
        x = torch.randn(len(ids), base.linear1.in_features, dtype=base.linear1.weight.dtype, generator=generator)
        with torch.no_grad():
            out = serve(server, x.clone(), ids.clone())
            expected = torch.empty_like(out)
            for k, model in enumerate(models):
                expected[ids == k] = model(x[ids == k])
        if max_difference(out, expected) > IDENTITY_RTOL * max(expected.abs().max().item(), 1.0):
            absent = "" if len(ids.unique()) == len(models) else " (here adapter 3 has no request)"
            return f"on {len(ids)} requests{absent} some do not get their own adapter's output, in the batch's order"
    return True


@exercise("13.3",
          "n merged copies hold n bases; the shared way holds one base and n adapters (A and B of each layer).",
          "DigitsNet: the base is 4 bytes × 235,146 parameters, an r = 4 adapter 4 bytes × 4·(1,040 + 384 + 138). "
          "7B: 2 bytes × 7e9, an adapter 2 bytes × 32 blocks × 2 layers × 16·(4,096 + 4,096).")
def adapter_memory(answer, base):
    """Bytes of n merged copies and of one base + n adapters, for DigitsNet (float32) and the 7B model (16 bits)."""
    small, big = answer
    base_bytes = sum(p.numel() * p.element_size() for p in base.parameters())
    adapter_bytes = 4 * expected_lora_parameters(base, 4)   # float32 A and B of the three layers
    per_model = {"DigitsNet": (small, base_bytes, adapter_bytes), "7B": (big, 2 * 7e9, 2 * 32 * 2 * 16 * 8192)}
    for name, (table, one_base, one_adapter) in per_model.items():
        if not isinstance(table, dict) or set(table) != {4, 100, 1000}:
            return f"{name}: give a dict with the keys 4, 100 and 1000"
        for n, (copies, shared) in table.items():
            if not close(copies, n * one_base):
                return f"{name}, {n} adapters: {copies:,.0f} bytes is not what {n} merged copies take"
            if not close(shared, one_base + n * one_adapter):
                return f"{name}, {n} adapters: {shared:,.0f} bytes is not one base and {n} adapters"
    return True
