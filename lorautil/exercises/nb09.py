"""Checks for the exercises of notebook 09 (LoRA on attention)."""
import torch

from ..linalg import lora_parameter_count
from ..lora import expected_lora_parameters, lora_layers
from ..model import count_parameters
from ..training import evaluate
from . import close, exercise


@exercise("09.1",
          "A rank-r adapter on a d × k weight has A (r × k) and B (d × r): (d + k)·r parameters; the bias is not "
          "part of it.",
          "One 64 × 64 W_q at r = 12: (64 + 64)·12. ViT-Base has 12 blocks with one 768 × 768 W_q each: "
          "12·(768 + 768)·12.")
def budget_counts(answer, vit):
    """LoRA parameters of one rank-12 adapter on the ViT's W_q, and of W_q at r = 12 in all 12 blocks of ViT-Base."""
    per_layer, vit_base = answer
    expected = expected_lora_parameters(vit, 12, ["blocks.0.attn.q_proj"])
    if per_layer != expected:
        return f"{per_layer:,} is not what A and B of one rank-12 adapter on a 64 × 64 W_q hold"
    if vit_base != 12 * lora_parameter_count(768, 768, 12):
        return f"{vit_base:,} is not the cost of W_q at r = 12 in each of ViT-Base's 12 blocks (width 768)"
    return True


@exercise("09.3",
          "Call finetune as fine_tune does for W_q, with three times the steps: steps=3 * STEPS, seed 0, at "
          "chosen_lr['W_q'].",
          "longer_model, _ = finetune(vit, rotated_fit, r=12, alpha=24.0, target_modules=['q_proj'], "
          "steps=3 * STEPS, seed=0, digits=None, lr=chosen_lr['W_q'], batch_size=BATCH_SIZE).")
def w_q_trained_longer(answer, vit, short_model, rotated_choose):
    """W_q alone at r = 12 (scaling 2), trained further than section 4's 100-step model of the same seed."""
    layers = dict(lora_layers(answer))
    if sorted(layers) != ["blocks.0.attn.q_proj", "blocks.1.attn.q_proj"]:
        return f"LoRA sits on {sorted(layers) or 'no layer'}, not on W_q (q_proj) of both blocks alone"
    if any(layer.r != 12 or not close(layer.scaling, 2.0) for layer in layers.values()):
        return "use section 4's settings for W_q: r = 12 and alpha = 24 (a scaling of 2)"
    trainable = count_parameters(answer, trainable_only=True)
    if trainable != 3_072:
        return f"{trainable:,} parameters train, not 3,072: only A and B should train"
    short = dict(lora_layers(short_model))
    if all(torch.equal(layers[name].lora_B, short[name].lora_B) for name in layers):
        return "this is section 4's model after 100 steps: train it three times as long"
    if evaluate(answer, rotated_choose).accuracy < evaluate(vit, rotated_choose).accuracy + 0.1:
        return "the model barely reads rotated digits: fine-tune it on rotated_fit, with all ten labels (digits=None)"
    return True
