"""The latent flow video model as a backbone (``latent_flow``); see docs/latent_flow.md.

Frames are encoded by a 2D VAE (vae.py) into latent maps; a ConvGRU temporal model (temporal.py) steps
over the latents and predicts per transition a backward flow, an occlusion (visibility) mask, a residual
and a collision logit; the next latent is

    z_{t+1} = occ * warp(z_t, flow) + (1 - occ) * background + residual

where ``background`` is the per-location temporal mean of the observed latents (what a disoccluded
location most likely shows: objects move, the background stays).  Future latents are rolled out
autoregressively and decoded: one call returns all ``out_frames`` frames.

Phases (``phase``): ``vae`` trains the VAE alone (the backbone auto-encodes the target frames in training,
so the trainer's loss is the reconstruction; in eval it repeats the reconstruction of the last observed
frame); ``temporal`` freezes the VAE (the vae phase's, ``vae_checkpoint``) and trains the temporal model;
``joint`` (from ``temporal_checkpoint`` or ``vae_checkpoint``) trains everything. The factory loads those
checkpoints (phases.py).  Auxiliary losses, balanced
by learned uncertainty weights, are returned in the output's ``aux_losses`` as ``lf_<name>``.

Flow targets are computed online from the training frames (OpenCV Farneback, frames assumed in [0, 1]) or
read from the dataset's precomputed cache. The residual head's target is built from them (warp.residual_target):
what the composition with the target flow and visibility misses of the next latent.

Options of the seed document's notes: ``train_out_frames`` draws the number of predicted frames of each training
step in a range; ``lambda_adv`` adds a patch discriminator's term to the VAE phase (adversarial.py).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from pdr.data.optical_flow import flow_targets, resize_flow, warp
from pdr.errors import ConfigError

from ..base import Backbone, BackboneOutput
from . import losses as L
from .adversarial import AdversarialTerm
from .temporal import TemporalModel
from .vae import LatentVAE
from .warp import compose_next, residual_target

PHASES = ("vae", "temporal", "joint")
FLOW_SOURCES = ("online", "precomputed", "none")
VAE_LOSSES = ("recon", "perceptual", "kl")
TEMPORAL_LOSSES = ("latent", "flow_epe", "occlusion", "warp", "residual", "collision")
HORIZON_STREAM = 271  # the random stream of the training horizons, with the step: apart from every other draw


class LatentFlow(Backbone):
    """VAE + latent flow temporal model (module docstring).  (B, T_in, C, H, W) -> (B, T_out, C, H, W).

    Args:
        in_shape, out_frames: set by ``build_model``.
        phase: "vae", "temporal" or "joint" (what trains; see the module docstring).
        latent_channels: channels L of the latent map.
        nf: channels of the VAE's first level (doubled per level, at most 4 nf).
        levels: VAE halvings; H and W must be divisible by 2^levels (latent h = H / 2^levels).
        hidden: channels of the ConvGRU and the heads.
        layers: ConvGRU cells.
        max_flow: bound of the predicted flow in latent pixels (tanh-scaled).
        perceptual: "auto" (DINOv2 when cached, else fixed random conv features), "dino", "random", "none".
        flow_targets: "online" (Farneback on the batch frames), "precomputed" (the flows tools/precompute_flow.py
            stored next to the videos, handed over by the dataset: CLEVRER's ``return_flows: true``) or "none"
            (no flow, occlusion or residual losses: the residual's target is built from the flow targets).
        loss_weights: fixed multipliers w_i of the uncertainty-weighted terms, by loss name
            (recon, perceptual, kl, latent, flow_epe, occlusion, warp, residual, collision).
        output_activation: "sigmoid" (data in [0, 1]) or "none".
        train_out_frames: [lo, hi] with 1 <= lo <= hi <= out_frames: phases temporal and joint predict a number of
            frames drawn per training step in [lo, hi] (from the step number, so a resumed run draws the same);
            every loss is a mean over the frames of the step. null: always ``out_frames``. Eval predicts
            ``out_frames``.
        lambda_adv: weight of the patch discriminator's term in phase vae (0: off, no discriminator is built;
            other phases ignore it).
        disc_nf, disc_lr: width and Adam learning rate of that discriminator.
    """

    uses_targets = True
    predicts_collisions = True
    # from the dataset in training: CLEVRER's collision labels (data.return_collision) and its
    # precomputed flows (data.return_flows)
    extra_inputs = ("collision", "flow_backward", "flow_visible")

    def __init__(self, in_shape: Sequence[int], out_frames: int, phase: str = "joint", latent_channels: int = 8,
                 nf: int = 32, levels: int = 2, hidden: int = 64, layers: int = 2, max_flow: float = 4.0,
                 perceptual: str = "auto", flow_targets: str = "online", loss_weights: dict | None = None,
                 output_activation: str = "sigmoid", train_out_frames: tuple[int, int] | None = None,
                 lambda_adv: float = 0.0, disc_nf: int = 32, disc_lr: float = 2e-4):
        super().__init__(in_shape, out_frames)
        t_in, c, h, w = self.in_shape
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {list(PHASES)}, got {phase!r}")
        if flow_targets not in FLOW_SOURCES:
            raise ValueError(f"flow_targets must be one of {list(FLOW_SOURCES)}, got {flow_targets!r}")
        if t_in < 2:
            raise ValueError(f"latent_flow needs at least 2 observed frames (data.in_frames), got {t_in}")
        if levels < 1 or h % 2 ** levels or w % 2 ** levels:
            raise ValueError(f"levels={levels}: H and W ({h}x{w}) must be divisible by 2^levels = {2 ** levels}")
        if min(latent_channels, nf, hidden, layers) < 1:
            raise ValueError("latent_channels, nf, hidden and layers must be >= 1")
        if train_out_frames is not None and not (
                len(train_out_frames) == 2 and 1 <= train_out_frames[0] <= train_out_frames[1] <= out_frames):
            raise ValueError(f"train_out_frames must be [lo, hi] with 1 <= lo <= hi <= out_frames ({out_frames}), "
                             f"got {list(train_out_frames)}")
        if lambda_adv < 0:
            raise ValueError(f"lambda_adv must be >= 0, got {lambda_adv}")
        self.phase, self.flow_source = phase, flow_targets
        self.train_out_frames = None if train_out_frames is None else tuple(int(v) for v in train_out_frames)
        self.vae = LatentVAE(c, latent_channels, nf, levels, output_activation)
        self.temporal = TemporalModel(latent_channels, hidden, layers, max_flow)
        self.feature_channels = self.vae.feature_channels
        # kept out of the module tree: a frozen network that checkpoints need not store
        net, self.perceptual_used = L.build_perceptual(perceptual) if phase in ("vae", "joint") else (None, "none")
        self.perceptual_asked = perceptual
        self._perceptual = [net]
        names = []
        if phase in ("vae", "joint"):
            names += [n for n in VAE_LOSSES if n != "perceptual" or self.perceptual_net is not None]
        if phase in ("temporal", "joint"):
            needs_flow = ("flow_epe", "occlusion", "residual")
            names += [n for n in TEMPORAL_LOSSES if flow_targets != "none" or n not in needs_flow]
        unknown = sorted(set(loss_weights or {}) - set(VAE_LOSSES + TEMPORAL_LOSSES))
        if unknown:
            raise ValueError(f"loss_weights: unknown loss names {unknown}; "
                             f"choose among {list(VAE_LOSSES + TEMPORAL_LOSSES)}")
        self.weighting = L.UncertaintyWeighting(  # weights of losses another phase uses are ignored here
            names, {k: v for k, v in (loss_weights or {}).items() if k in names})
        self.raw_losses: dict[str, float] = {}
        for p in (self.temporal.parameters() if phase == "vae" else ()):
            p.requires_grad_(False)
        for p in (self.vae.parameters() if phase == "temporal" else ()):
            p.requires_grad_(False)
        self.lambda_adv = float(lambda_adv) if phase == "vae" else 0.0
        self.adversarial = AdversarialTerm(c, disc_nf, disc_lr) if self.lambda_adv > 0 else None

    @classmethod
    def size_multiple(cls, in_shape: Sequence[int], levels: int = 2, **_) -> int:
        """H and W must be multiples of 2^levels (the VAE's halvings)."""
        return 2 ** int(levels)

    # ------------------------------------------------------------------ contract

    @property
    def frames_per_call(self) -> int:
        return self.out_frames

    def resolved_choices(self) -> dict[str, str]:
        """The perceptual network and the source of the flow targets this phase trains with."""
        out = {}
        if self.phase in ("vae", "joint"):
            out["perceptual"] = {
                "dino": f"DINOv2 ({L.DINO_HUB_ID}, cached weights)",
                "random": "fixed random conv features" + (
                    " (perceptual: auto found no cached DINOv2 weights)" if self.perceptual_asked == "auto" else ""),
                "none": "none",
            }[self.perceptual_used]
        if self.phase in ("temporal", "joint"):
            out["flow_targets"] = {
                "online": "OpenCV Farneback on the training frames (flow_targets: online)",
                "precomputed": "read from the dataset's flow cache (its method is checked by the dataset)",
                "none": "none (no flow, occlusion and residual losses)",
            }[self.flow_source]
        return out

    def training_horizon(self, step: int | None) -> int:
        """Frames a training step of phase temporal or joint predicts: ``out_frames``, or with ``train_out_frames``
        = [lo, hi] a number in [lo, hi] drawn from the step number (torch's generator when there is none)."""
        if self.train_out_frames is None:
            return self.out_frames
        lo, hi = self.train_out_frames
        if step is None:
            return int(torch.randint(lo, hi + 1, ()).item())
        return int(np.random.default_rng([HORIZON_STREAM, int(step)]).integers(lo, hi + 1))

    @property
    def perceptual_net(self):
        """The frozen perceptual network (not a submodule: not in checkpoints), or None."""
        return self._perceptual[0]

    # ------------------------------------------------------------------ building blocks

    def encode(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """frames (B, T, C, H, W) -> mean, logvar (B, T, L, h, w)."""
        b, t = frames.shape[:2]
        mean, logvar = self.vae.encode(frames.flatten(0, 1))
        return mean.view(b, t, *mean.shape[1:]), logvar.view(b, t, *logvar.shape[1:])

    def decode(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """z (B, T, L, h, w) -> frames (B, T, C, H, W) and decoder features (B, T, nf, H, W)."""
        b, t = z.shape[:2]
        frames, feats = self.vae.decode(z.flatten(0, 1), return_features=True)
        return frames.view(b, t, *frames.shape[1:]), feats.view(b, t, *feats.shape[1:])

    def rollout(self, z_obs: Tensor, num_future: int) -> dict:
        """Step the temporal model over observed latents z_obs (B, T_in, L, h, w), then ``num_future`` steps
        autoregressively.  Returns per transition t -> t+1 (n = T_in - 1 + num_future of them), each (B, n, ...):
        ``flow``, ``occ``, ``residual``, ``collision`` (B, n), ``next`` (the predicted z_{t+1}) and ``warped``
        (warp(z_t, flow))."""
        t_in = z_obs.shape[1]
        fill = z_obs.mean(1)
        state = self.temporal.init_state(z_obs[:, 0])
        out: dict[str, list] = {k: [] for k in ("flow", "occ", "residual", "collision", "next", "warped")}
        z_prev, z_t = z_obs[:, 0], z_obs[:, 0]
        for t in range(t_in - 1 + num_future):
            if t < t_in:
                z_t = z_obs[:, t]
            heads, state = self.temporal.step(z_t, z_prev, state)
            nxt, warped = compose_next(z_t, heads["flow"], heads["occ"], fill, heads["residual"])
            for k in ("flow", "occ", "residual", "collision"):
                out[k].append(heads[k])
            out["next"].append(nxt)
            out["warped"].append(warped)
            z_prev, z_t = z_t, nxt
        return {k: torch.stack(v, 1) for k, v in out.items()}

    def observed_flows(self, x: Tensor) -> Tensor:
        """Flow head over the observed transitions of x (B, T_in, C, H, W): (B, T_in - 1, 2, h, w)."""
        with torch.no_grad():
            z = self.encode(x)[0]
        return self.rollout(z, 0)["flow"]

    # ------------------------------------------------------------------ evaluation

    @property
    def validates_reconstruction(self) -> bool:
        """The VAE phase predicts nothing: validation scores its reconstructions (see ``reconstruct``)."""
        return self.phase == "vae"

    def reconstruct(self, frames: Tensor) -> Tensor:
        """frames (B, T, C, H, W) -> their reconstructions through the VAE's mean latents (B, T, C, H, W)."""
        return self.decode(self.encode(frames)[0])[0]

    def collision_probabilities(self, x: Tensor) -> Tensor | None:
        """Probability (B, T_out) of a collision at each predicted step for inputs x (B, T_in, C, H, W), the steps
        of CLEVRER's labels (``collision_labels``); None in the VAE phase (its collision head is untrained)."""
        if self.phase == "vae":
            return None
        with torch.no_grad():
            logits = self.rollout(self.encode(x)[0], self.out_frames)["collision"]
        return torch.sigmoid(logits[:, x.shape[1] - 1:])

    # ------------------------------------------------------------------ losses

    def _vae_losses(self, seq: Tensor, rec: Tensor, mean: Tensor, logvar: Tensor) -> dict:
        out = {"recon": L.l1(rec, seq), "kl": L.kl_standard_normal(mean, logvar)}
        net = self.perceptual_net
        if net is not None:
            if next(net.parameters()).device != rec.device:
                self._perceptual[0] = net = net.to(rec.device)
            out["perceptual"] = L.perceptual_l1(net, rec.flatten(0, 1), seq.flatten(0, 1))
        return out

    def _temporal_losses(self, seq: Tensor, z_true: Tensor, roll: dict, collision: Tensor | None,
                         given_flows: tuple[Tensor, Tensor] | None = None) -> dict:
        """The temporal losses of frames seq (B, T, C, H, W), their encoded latents z_true (B, T, L, h, w) and the
        rollout ``roll`` over their T - 1 transitions."""
        h, w = z_true.shape[-2:]
        nxt_true = z_true[:, 1:]
        out = {"latent": L.l1(roll["next"], nxt_true)}
        warped_frames, _ = self.decode(roll["warped"])
        out["warp"] = L.l1(warped_frames, seq[:, 1:])
        if self.flow_source == "precomputed" and given_flows is None:
            raise ConfigError("model.backbone.flow_targets: precomputed needs flows from the dataset; set "
                             "data.return_flows: true (CLEVRER) after running tools/precompute_flow.py on the videos, "
                             "or use flow_targets: online")
        if self.flow_source != "none":
            with torch.no_grad():
                bw, visible = flow_targets(seq) if self.flow_source == "online" else given_flows
                bw, visible = bw.to(seq.dtype), visible.to(seq.dtype)
                n = bw.shape[1]
                bw = resize_flow(bw.flatten(0, 1), (h, w)).view(-1, n, 2, h, w)
                visible = torch.nn.functional.interpolate(visible.flatten(0, 1), size=(h, w), mode="area")
                visible = visible.view(-1, n, 1, h, w)
                fill = z_true[:, :self.in_shape[0]].mean(1, keepdim=True).expand(-1, n, -1, -1, -1)
                target = residual_target(z_true[:, :-1].flatten(0, 1), nxt_true.flatten(0, 1), bw.flatten(0, 1),
                                         visible.flatten(0, 1), fill.flatten(0, 1)).view_as(nxt_true)
            out["flow_epe"] = L.end_point_error(roll["flow"], bw)
            out["occlusion"] = L.occlusion_bce(roll["occ"], visible)
            out["residual"] = L.l1(roll["residual"], target)
        if collision is not None:
            t_in = seq.shape[1] - collision.shape[1]
            out["collision"] = L.focal_loss(roll["collision"][:, t_in - 1:], collision)
        return out

    def _weighted(self, raw: dict, unused: tuple[Tensor, ...] = ()) -> dict[str, Tensor]:
        """The raw losses weighted into ``lf_<name>`` terms (and kept, as numbers, in ``raw_losses``). ``unused``:
        outputs no loss of this batch reads (the collision logits of a batch without labels)."""
        raw = {k: v for k, v in raw.items() if k in self.weighting.log_vars}
        self.raw_losses = {k: float(v.detach()) for k, v in raw.items()}
        aux = {f"lf_{k}": v for k, v in self.weighting(raw).items()}
        # DistributedDataParallel wants a gradient for every trainable parameter in every step: the heads and
        # log-variances of losses this batch lacks get an exact zero one
        idle = [*unused, *(s for n, s in self.weighting.log_vars.items() if n not in raw)]
        if idle and aux:
            first = next(iter(aux))
            aux[first] = aux[first] + sum(0.0 * t.sum() for t in idle)
        return aux

    # ------------------------------------------------------------------ forward

    def forward(self, x: Tensor, return_features: bool = False, targets: Tensor | None = None,
                step: int | None = None, collision: Tensor | None = None, flow_backward: Tensor | None = None,
                flow_visible: Tensor | None = None) -> BackboneOutput:
        """x (B, T_in, C, H, W) -> frames (B, T_out, C, H, W) (and decoder features (B, T_out, nf, H, W) when asked).

        In training with ``targets`` (B, T_out, C, H, W) the losses of the phase are the auxiliary losses; ``collision``
        (B, T_out) labels, when given, add the collision focal loss. ``flow_backward`` (B, T-1, 2, H, W) and
        ``flow_visible`` (B, T-1, 1, H, W), over the T = T_in + T_out frames, are the precomputed targets that
        ``flow_targets: precomputed`` needs. With ``train_out_frames`` a training call of phase temporal or joint
        predicts n = ``training_horizon(step)`` frames (B, n, C, H, W) against the first n targets.
        """
        if x.dim() != 5 or tuple(x.shape[1:]) != self.in_shape:
            raise ValueError(f"latent_flow: x must have shape (B, {', '.join(map(str, self.in_shape))}), "
                             f"got {tuple(x.shape)}")
        aux: dict[str, Tensor] = {}
        t_in = x.shape[1]
        train = self.training and targets is not None
        horizon = self.training_horizon(step) if train and self.phase != "vae" else self.out_frames
        if train and horizon < targets.shape[1]:  # a shorter training step: the first frames and their labels
            targets = targets[:, :horizon]
            collision = None if collision is None else collision[:, :horizon]
            if flow_backward is not None:
                flow_backward, flow_visible = flow_backward[:, :t_in + horizon - 1], flow_visible[:, :t_in + horizon - 1]
        seq = torch.cat([x, targets.to(x.dtype)], 1) if train else x
        if self.phase == "vae":
            if train:
                mean, logvar = self.encode(seq)
                rec, feats = self.decode(self.vae.sample(mean, logvar))
                aux = self._weighted(self._vae_losses(seq, rec, mean, logvar))
                if self.adversarial is not None:
                    aux["lf_adv"] = self._adversarial_term(seq.flatten(0, 1), rec.flatten(0, 1))
                frames, feats = rec[:, t_in:], feats[:, t_in:]
            else:  # the VAE alone predicts "nothing moves": the last frame's reconstruction, repeated
                frames, feats = self.decode(self.encode(x[:, -1:])[0])
                frames = frames.expand(-1, self.out_frames, -1, -1, -1)
                feats = feats.expand(-1, self.out_frames, -1, -1, -1)
            return BackboneOutput(frames, feats if return_features else None, aux)

        if self.phase == "temporal":
            with torch.no_grad():
                mean, logvar = self.encode(seq)
            z = mean
        else:
            mean, logvar = self.encode(seq)
            z = self.vae.sample(mean, logvar) if train else mean
        roll = self.rollout(z[:, :t_in], horizon)
        frames, feats = self.decode(roll["next"][:, t_in - 1:])
        if train:
            given = None if flow_backward is None else (flow_backward, flow_visible)
            raw = self._temporal_losses(seq, mean, roll, collision, given)
            if self.phase == "joint":
                rec, _ = self.decode(z)
                raw.update(self._vae_losses(seq, rec, mean, logvar))
            aux = self._weighted(raw, unused=() if collision is not None else (roll["collision"],))
        return BackboneOutput(frames, feats if return_features else None, aux)

    def _adversarial_term(self, real: Tensor, fake: Tensor) -> Tensor:
        """One discriminator step on frames (N, C, H, W), then the VAE's term ``lambda_adv * -mean(D(fake))``; the
        raw values are kept in ``raw_losses`` as ``adv`` and ``disc`` (the discriminator's hinge loss)."""
        disc = self.adversarial.update(real, fake)
        adv = self.adversarial.generator_loss(fake)
        self.raw_losses.update(adv=float(adv.detach()), disc=float(disc))
        return self.lambda_adv * adv


def flow_warp_frames(frames: Tensor, flows: Tensor) -> Tensor:
    """Warp frames t (B, n, C, H, W) by latent-resolution flows (B, n, 2, h, w) upsampled to (H, W)."""
    b, n = frames.shape[:2]
    size = tuple(frames.shape[-2:])
    up = resize_flow(flows.flatten(0, 1), size)
    return warp(frames.flatten(0, 1), up).view(b, n, *frames.shape[2:])
