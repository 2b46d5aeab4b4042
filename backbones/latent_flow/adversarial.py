"""The optional adversarial term of the VAE phase: a patch discriminator with its own Adam optimizer.

The discriminator D scores overlapping patches of a frame, (N, C, H, W) -> logits (N, 1, H/8, W/8) (a
PatchGAN). Hinge losses: D minimises mean(relu(1 - D(real))) + mean(relu(1 + D(fake))); the VAE's term is
``lambda_adv * -mean(D(reconstruction))`` (added as ``lf_adv``, outside the uncertainty weighting: a hinge
generator loss can be negative, and a learned log-variance would run away with it).

The trainer's optimizer never sees D: D's parameters require no gradient outside ``update``, so they are in
no parameter group and the VAE's loss gives them none. ``update`` takes one Adam step on D per training
forward, before the VAE's term is computed (the VAE's graph then holds the updated weights). Adam's moments
and step counts are buffers of this module, bound to the optimizer at each step: the trainer's checkpoints
(the model's state_dict) hold them, --resume restores them, and ``.to(device)`` or an EMA of the weights
treat them like any buffer.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(8 if ch % 8 == 0 else 1, ch)


class PatchDiscriminator(nn.Module):
    """Three 4x4 stride-2 convs (nf, 2nf, 4nf; GroupNorm after the first) and a 3x3 conv to one logit per patch:
    (N, C, H, W) -> (N, 1, H/8, W/8)."""

    def __init__(self, channels: int, nf: int = 32):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = channels
        for i in range(3):
            c_out = nf * 2 ** i
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1), *([_norm(c_out)] if i else []), nn.LeakyReLU(0.2)]
            c_in = c_out
        layers.append(nn.Conv2d(c_in, 1, 3, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def discriminator_hinge(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """mean(relu(1 - real)) + mean(relu(1 + fake)): 0 once every real patch scores >= 1 and every fake <= -1."""
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


class AdversarialTerm(nn.Module):
    """The discriminator, its Adam state (as buffers) and the two hinge losses (module docstring).

    Args:
        channels: frame channels C.
        nf: width of the discriminator's first conv.
        lr, betas: Adam's settings for the discriminator (its own optimizer, no schedule).
    """

    def __init__(self, channels: int, nf: int = 32, lr: float = 2e-4, betas: tuple[float, float] = (0.5, 0.9)):
        super().__init__()
        if nf < 1 or lr <= 0:
            raise ValueError(f"disc_nf must be >= 1 and disc_lr > 0, got {nf} and {lr}")
        self.disc = PatchDiscriminator(channels, nf)
        self.disc.requires_grad_(False)
        for i, p in enumerate(self.disc.parameters()):
            self.register_buffer(f"adam_step_{i}", torch.zeros(()))
            self.register_buffer(f"adam_exp_avg_{i}", torch.zeros_like(p))
            self.register_buffer(f"adam_exp_avg_sq_{i}", torch.zeros_like(p))
        self.lr, self.betas = float(lr), tuple(betas)
        self._optimizer: torch.optim.Adam | None = None

    def optimizer(self) -> torch.optim.Adam:
        """The discriminator's Adam, its state bound to this module's buffers (which ``.to()`` may have replaced)."""
        params = list(self.disc.parameters())
        if self._optimizer is None:
            self._optimizer = torch.optim.Adam(params, lr=self.lr, betas=self.betas)
        for i, p in enumerate(params):
            self._optimizer.state[p] = {"step": getattr(self, f"adam_step_{i}"),
                                        "exp_avg": getattr(self, f"adam_exp_avg_{i}"),
                                        "exp_avg_sq": getattr(self, f"adam_exp_avg_sq_{i}")}
        return self._optimizer

    @property
    def steps_taken(self) -> int:
        """Adam steps the discriminator has taken (restored with the checkpoint)."""
        return int(self.adam_step_0.item())

    def update(self, real: Tensor, fake: Tensor) -> Tensor:
        """One Adam step of the discriminator on real and fake frames (N, C, H, W), in float32 whatever the
        autocast; ``fake`` is detached. Returns the discriminator's hinge loss before the step (detached).
        Under torch.distributed the gradients are averaged over the processes first, so every copy of D stays
        the same."""
        params = list(self.disc.parameters())
        with torch.autocast(real.device.type, enabled=False), torch.enable_grad():
            self.disc.requires_grad_(True)
            try:
                loss = discriminator_hinge(self.disc(real.detach().float()), self.disc(fake.detach().float()))
                grads = torch.autograd.grad(loss, params)
            finally:
                self.disc.requires_grad_(False)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            world = torch.distributed.get_world_size()
            for g in grads:
                torch.distributed.all_reduce(g)
                g.div_(world)
        optimizer = self.optimizer()
        for p, g in zip(params, grads):
            p.grad = g
        optimizer.step()
        for p in params:
            p.grad = None
        return loss.detach()

    def generator_loss(self, fake: Tensor) -> Tensor:
        """-mean(D(fake)) for frames (N, C, H, W); the gradient reaches ``fake`` only (D requires none)."""
        return -self.disc(fake).mean()
