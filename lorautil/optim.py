"""FlatAdam: torch.optim.Adam's default update, bit for bit, in a few calls per step (notebook 02)."""
import torch


class FlatAdam:
    """torch.optim.Adam(lr, betas, eps) with its moments in one flat tensor each (notebook 02).

    torch.optim.Adam's default CPU loop makes about seven calls per parameter tensor per step, and on
    DigitsNet's small tensors those calls, not the arithmetic, take most of the time. Adam works entry
    by entry, so keeping every tensor's moments side by side in one flat tensor and updating them in one
    call each gives the same numbers, bit for bit (tests/test_models_training.py checks it on every CPU kernel
    set), with eight calls per step whatever the number of tensors.

    `slots` lists (tensor, index, lr): tensor[index] is updated with learning rate lr from tensor.grad[index]
    (`FlatAdam.over(params, lr)` for whole parameters; notebook 05's stacked adapters use slices). It costs
    two more flat buffers than torch's Adam: a copy of the gradients and the denominator.
    """

    def __init__(self, slots, betas=(0.9, 0.999), eps=1e-8):
        self.slots = [(p, index) for p, index, _ in slots]
        self.lrs = [float(lr) for _, _, lr in slots]
        self.params = list({id(p): p for p, _ in self.slots}.values())
        self.views = [p.detach()[index] for p, index in self.slots]  # share the parameters' memory
        if len({(view.dtype, view.device) for view in self.views}) > 1:
            raise ValueError("FlatAdam needs every tensor on one device with one dtype; use torch.optim.Adam")
        sizes = [view.numel() for view in self.views]
        like = self.views[0] if self.views else torch.empty(0)
        # grad holds this step's gradients copied side by side; denom is scratch.
        self.exp_avg, self.exp_avg_sq, self.grad, self.denom = (like.new_zeros(sum(sizes)) for _ in range(4))
        self.grads, self.exp_avgs, self.denoms = ([part.view(view.shape) for part, view in
                                                   zip(flat.split(sizes), self.views, strict=True)]
                                                  for flat in (self.grad, self.exp_avg, self.denom))
        self.betas, self.eps, self.steps = betas, eps, 0

    @classmethod
    def over(cls, params, lr, **options):
        """FlatAdam for whole parameters, one lr: what torch.optim.Adam(params, lr) computes (notebook 02)."""
        return cls([(p, ..., lr) for p in params], **options)

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        missing = [i for i, (p, _) in enumerate(self.slots) if p.grad is None]
        if missing:
            raise RuntimeError(f"FlatAdam: tensors {missing} got no gradient this step (torch.optim.Adam would skip "
                               "them); train only parameters the loss uses, or pass optimizer=torch.optim.Adam(...)")
        beta1, beta2 = self.betas
        self.steps += 1
        # The same operations in the same order as torch.optim.Adam's default single-tensor loop.
        bias_correction1, bias_correction2 = 1 - beta1 ** self.steps, 1 - beta2 ** self.steps
        bias_correction2_sqrt = bias_correction2 ** 0.5
        torch._foreach_copy_(self.grads, [p.grad[index] for p, index in self.slots])
        self.exp_avg.lerp_(self.grad, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(self.grad, self.grad, value=1 - beta2)
        torch.sqrt(self.exp_avg_sq, out=self.denom).div_(bias_correction2_sqrt).add_(self.eps)
        # Each slot's own lr: param + (-lr / bias_correction1) * exp_avg / denom, as torch's addcdiv_ does it.
        torch._foreach_addcdiv_(self.views, self.exp_avgs, self.denoms, [-lr / bias_correction1 for lr in self.lrs])
