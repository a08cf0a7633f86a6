"""Checks for the exercises of notebook 11 (LoRA with PEFT)."""
import copy
import re

from torch import nn

from ..lora import add_lora, lora_layers, lora_scaling
from . import close, exercise

ADAPTABLE = (nn.Linear, nn.Conv2d, nn.Embedding)


@exercise("11.1",
          "adapter_config.json keeps r = 8 for every layer and lists in rank_pattern only the layers that differ.",
          "After PeftModel.from_pretrained, read layer.r['default'] (or the rows of layer.lora_A['default'].weight) "
          "for linear1, linear2 and linear3 of mixed_peft.base_model.model.")
def ranks_from_the_file(answer, base):
    """The rank PEFT builds per layer: rank_pattern's where it names the layer, r = 8 elsewhere."""
    model = add_lora(copy.deepcopy(base), 8, method="wrapper", rank_pattern={"linear1": 16, "linear3": 2})
    expected = {name: lora.r for name, lora in lora_layers(model)}
    if not isinstance(answer, dict) or set(answer) != set(expected):
        return f"give a dict with the keys {sorted(expected)}"
    wrong = [name for name in expected if answer[name] != expected[name]]
    if wrong:
        return f"{', '.join(wrong)}: not the rank PEFT builds from r and rank_pattern"
    return True


@exercise("11.2",
          "A string in target_modules is a regular expression that must match a module's whole name (re.fullmatch).",
          "Every name in the ViT starts with 'blocks.' (or is patch_embed, pos_embed, head): which names does each "
          "pattern match from their first character to their last? peft_targets(pattern) shows what PEFT adapts.")
def regex_targets(answer, vit):
    """The ViT layers each pattern matches as a whole name, as PEFT reads a string."""
    names = [name for name, module in vit.named_modules() if isinstance(module, ADAPTABLE)]
    patterns = (".*attn.(q|v)_proj", "attn.(q|v)_proj")
    if not isinstance(answer, dict) or set(answer) != set(patterns):
        return f"give a dict with the two patterns {patterns} as keys"
    for pattern in patterns:
        expected = sorted(name for name in names if re.fullmatch(pattern, name))
        if not isinstance(answer[pattern], (list, tuple)) or sorted(answer[pattern]) != expected:
            searched = sorted(name for name in names if re.search(pattern, name))
            if sorted(answer[pattern]) == searched != expected:
                return f"{pattern!r}: those names contain a match, but PEFT needs the whole name to match"
            return f"{pattern!r}: not the layers PEFT adapts (give [] if it adapts none)"
    return True


@exercise("11.3",
          "rsLoRA divides alpha by the square root of r instead of by r.",
          "Read rs_peft.base_model.model.linear1.scaling['default'] and rs_ours.linear1.scaling; with r = 16 and "
          "alpha = 8 both should be 8 / 4.")
def rslora_scalings(answer):
    """Both libraries scale by alpha / sqrt(r) = 2 for r = 16, alpha = 8."""
    if not isinstance(answer, dict) or set(answer) != {"PEFT", "lorautil"}:
        return "give a dict with the keys 'PEFT' and 'lorautil'"
    expected, plain = lora_scaling(16, 8.0, rslora=True), lora_scaling(16, 8.0)
    for library, value in answer.items():
        if close(value, plain):
            return f"{library}: {value:g} is alpha / r: set use_rslora=True in PEFT and rslora=True in lorautil"
        if not close(value, expected):
            return f"{library}: {value:g} is not the scaling rsLoRA gives for r = 16, alpha = 8"
    return True
