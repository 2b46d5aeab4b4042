"""SRVP: a stochastic latent residual video predictor (the ideas of Franceschi et al., ICML 2020).

Our own implementation of the state-space model summarised in docs/method.md, section 4
(see docs/srvp.md for the full description and the evaluation protocol):

* every frame is encoded by a DCGAN-like conv encoder ``h``: x_t -> e_t (g_dim numbers) and
  feature maps at each halving of the resolution;
* a static content variable ``w`` comes from a few conditioning frames chosen among the observed
  ones (at random in training, a fixed evenly spaced choice in eval mode): the mean of their codes
  (a vector fed to the decoder) and the mean of their feature maps (skip connections of the decoder);
  a mean is a permutation-invariant function of the set of frames;
* the initial latent state y_1 is inferred from the first ``num_init_frames`` codes by an MLP,
  q(y_1 | x[1:k]) = N(mu, sigma) (a point in the deterministic variant);
* the dynamics are residual: y[t+1] = y_t + integral over one unit of time of f(y, z[t+1]), solved
  by ``euler_steps = round(1 / dt)`` explicit Euler steps of size 1 / euler_steps, z held fixed
  during the unit interval; smaller steps give frames between the training frames;
* stochastic variant: a learned prior p(z[t+1] | y_t) = N(mu(y_t), sigma(y_t)) and an LSTM posterior
  q(z[t] | x[1:t]) over the codes of the observed frames and, in training, of the target frames;
* the decoder g(y_t, w) maps a state and the content to a frame; ``content_swap`` decodes the states of one
  sequence with the content of another.

The variants the paper compares are options: ``dynamics: mlp`` (a non-residual step y[t+1] = f(y_t, z)) and
``dynamics: gru`` (a GRU cell over y with input z), both one step per frame.

Training maximises the ELBO: the trainer's configured loss on the returned (posterior-driven) future
frames, plus the auxiliary losses of its output (``BackboneOutput.aux_losses``): the reconstruction of
the observed frames (``recon_obs``) and the KL terms ``kl_z`` (posterior vs prior, per frame interval) and ``kl_y``
(q(y_1) vs N(0, I)), both multiplied by ``beta``.

Inference samples z from the prior after the observed frames (the posterior is used over the
observed ones). ``forward`` returns one sample (the deterministic path for ``stochastic: false``);
``sample(x, num_samples, frame_rate)`` returns several, optionally at a higher frame rate.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pdr.registry import BACKBONES

from .base import Backbone, BackboneOutput

OUTPUT_ACTIVATIONS = ("sigmoid", "tanh", "none")
OBS_LOSSES = ("mse", "l1")
MAX_LEVELS = 5


def gaussian_kl(mu_q: Tensor, sigma_q: Tensor, mu_p: Tensor, sigma_p: Tensor) -> Tensor:
    """KL(N(mu_q, sigma_q^2) || N(mu_p, sigma_p^2)) of diagonal Gaussians, summed over the last dim.

    All four are (..., D) with sigma > 0; returns (...). Zero exactly when both distributions agree.
    """
    var_q, var_p = sigma_q.pow(2), sigma_p.pow(2)
    kl = torch.log(sigma_p) - torch.log(sigma_q) + (var_q + (mu_q - mu_p).pow(2)) / (2.0 * var_p) - 0.5
    return kl.sum(dim=-1)


def _norm(channels: int) -> nn.GroupNorm:
    """GroupNorm: the same statistics in training and eval mode, whatever the batch (one sample or many)."""
    return nn.GroupNorm(8 if channels % 8 == 0 else 1, channels)


def _mlp(d_in: int, hidden: int, d_out: int, layers: int) -> nn.Sequential:
    """``layers`` hidden Linear + LeakyReLU layers of width ``hidden``, then a Linear to ``d_out``."""
    mods: list[nn.Module] = []
    width = d_in
    for _ in range(layers):
        mods += [nn.Linear(width, hidden), nn.LeakyReLU(0.2, inplace=True)]
        width = hidden
    mods.append(nn.Linear(width, d_out))
    return nn.Sequential(*mods)


class GaussianHead(nn.Module):
    """A Linear map to a diagonal Gaussian: (..., d_in) -> mean (..., d_out) and std (..., d_out).

    std = softplus(raw) + min_std. With zero weights and biases every input gives N(0, softplus(0) + min_std).
    """

    def __init__(self, d_in: int, d_out: int, min_std: float = 1e-3):
        super().__init__()
        self.linear = nn.Linear(d_in, 2 * d_out)
        self.min_std = float(min_std)

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        mu, raw = self.linear(h).chunk(2, dim=-1)
        return mu, F.softplus(raw) + self.min_std


class ResidualField(nn.Module):
    """The vector field f of dy/dt = f(y, z): (N, y_dim) and (N, z_dim) or None -> (N, y_dim)."""

    def __init__(self, y_dim: int, z_dim: int, hidden: int, layers: int):
        super().__init__()
        self.net = _mlp(y_dim + z_dim, hidden, y_dim, layers)
        with torch.no_grad():  # start close to y' = 0: a stable, slowly moving state
            self.net[-1].weight.mul_(0.1)
            self.net[-1].bias.zero_()

    def forward(self, y: Tensor, z: Tensor | None = None) -> Tensor:
        return self.net(y if z is None else torch.cat([y, z], dim=-1))


class MLPStep(nn.Module):
    """The non-residual variant of the paper's ablation: the next state itself, y[t+1] = f(y_t, z[t+1]).
    (N, y_dim) and (N, z_dim) or None -> (N, y_dim)."""

    def __init__(self, y_dim: int, z_dim: int, hidden: int, layers: int):
        super().__init__()
        self.net = _mlp(y_dim + z_dim, hidden, y_dim, layers)

    def forward(self, y: Tensor, z: Tensor | None = None) -> Tensor:
        return self.net(y if z is None else torch.cat([y, z], dim=-1))


class GRUStep(nn.Module):
    """The GRU variant of the paper's ablation: y[t+1] = GRUCell(input z[t+1], hidden y_t).
    (N, y_dim) and (N, z_dim) or None -> (N, y_dim). Without z (the deterministic variant) the input is a
    constant 1, so the cell still updates its state."""

    def __init__(self, y_dim: int, z_dim: int):
        super().__init__()
        self.cell = nn.GRUCell(max(z_dim, 1), y_dim)

    def forward(self, y: Tensor, z: Tensor | None = None) -> Tensor:
        return self.cell(y.new_ones(y.shape[0], 1) if z is None else z, y)


DYNAMICS = ("residual", "mlp", "gru")


class FrameEncoder(nn.Module):
    """DCGAN-like encoder: (N, C, H, W) -> code (N, g_dim) and ``levels`` maps [(N, widths[l], H/2^(l+1), W/2^(l+1))].

    Each level halves the resolution (4x4 conv, stride 2, GroupNorm, LeakyReLU); a conv whose kernel covers
    the last map gives the code.
    """

    def __init__(self, c_in: int, widths: Sequence[int], last_hw: tuple[int, int], g_dim: int):
        super().__init__()
        self.downs = nn.ModuleList()
        prev = c_in
        for width in widths:
            self.downs.append(nn.Sequential(nn.Conv2d(prev, width, 4, 2, 1), _norm(width), nn.LeakyReLU(0.2, inplace=True)))
            prev = width
        self.head = nn.Conv2d(prev, g_dim, last_hw)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        maps = []
        for down in self.downs:
            x = down(x)
            maps.append(x)
        return self.head(x).flatten(1), maps


class FrameDecoder(nn.Module):
    """Mirror of ``FrameEncoder``: code (N, d_in) and content maps -> frame (N, C, H, W) and features (N, widths[0], H, W).

    A Linear maps the code to the coarsest map; each level concatenates the content map of its resolution
    (the skip connection, when enabled) and doubles the resolution (4x4 transposed conv, GroupNorm, LeakyReLU);
    a 3x3 conv reads the frame out of the full-resolution features.
    """

    def __init__(self, d_in: int, widths: Sequence[int], last_hw: tuple[int, int], c_out: int, skip: bool,
                 activation: str):
        super().__init__()
        self.last_hw, self.skip, self.activation = tuple(last_hw), skip, activation
        self.top = widths[-1]
        self.fc = nn.Linear(d_in, widths[-1] * last_hw[0] * last_hw[1])
        self.fc_norm = nn.Sequential(_norm(widths[-1]), nn.LeakyReLU(0.2, inplace=True))
        self.ups = nn.ModuleList()
        for level in reversed(range(len(widths))):
            c_in = widths[level] * (2 if skip else 1)
            c_next = widths[level - 1] if level > 0 else widths[0]
            self.ups.append(
                nn.Sequential(nn.ConvTranspose2d(c_in, c_next, 4, 2, 1), _norm(c_next), nn.LeakyReLU(0.2, inplace=True))
            )
        self.readout = nn.Conv2d(widths[0], c_out, 3, 1, 1)

    def forward(self, code: Tensor, skips: Sequence[Tensor] | None) -> tuple[Tensor, Tensor]:
        h = self.fc_norm(self.fc(code).view(code.shape[0], self.top, *self.last_hw))
        for i, up in enumerate(self.ups):
            if self.skip:
                h = torch.cat([h, skips[len(self.ups) - 1 - i]], dim=1)
            h = up(h)
        frame = self.readout(h)
        if self.activation == "sigmoid":
            frame = torch.sigmoid(frame)
        elif self.activation == "tanh":
            frame = torch.tanh(frame)
        return frame, h


def _auto_levels(h: int, w: int) -> int:
    """Halvings until the smaller side is about 4 pixels (64 -> 4, 32 -> 3), at most ``MAX_LEVELS``."""
    return max(1, min(MAX_LEVELS, math.floor(math.log2(max(min(h, w), 1) / 4))))


@BACKBONES.register("srvp")
class SRVP(Backbone):
    """Stochastic latent residual video prediction (see the module docstring and docs/srvp.md).

    Input (B, T_in, C, H, W) -> frames (B, T_out, C, H, W): one call predicts all ``out_frames``.
    ``sample(x, K, frame_rate)`` -> frames (B, K, T_out * frame_rate, C, H, W).

    Args:
        in_shape, out_frames: set by ``build_model`` from the data section.
        nf: channels of the first encoder level (doubled per level, at most 8 * nf).
        g_dim: size of a frame's code e_t.
        y_dim: size of the latent state y_t.
        z_dim: size of the stochastic input z_t (unused when ``stochastic`` is false).
        hidden: width of the MLPs (initial state, dynamics f, prior).
        mlp_layers: hidden layers of the dynamics MLP f (the others have one).
        lstm_hidden: width of the posterior LSTM.
        content_dim: size of the content vector fed to the decoder with y_t (0: content only through skips).
        num_init_frames: k, the first k observed frames give y_1.
        num_content_frames: observed frames the content variable w is computed from.
        dt: Euler step; ``round(1 / dt)`` steps per frame interval (1.0: one step, the plain residual update).
        stochastic: false gives the deterministic variant (no z, no prior/posterior, y_1 a point).
        beta: weight of the KL terms (kl_z and kl_y, each per frame, summed over latent dims).
        kl_warmup_steps: beta grows linearly from 0 over this many training steps (0: constant beta).
        obs_weight: weight of the reconstruction of the observed frames (``recon_obs``; 0 disables it).
        obs_loss: "mse" or "l1" for ``recon_obs``.
        dynamics: "residual" (the model: y[t+1] = y_t + integral of f, Euler steps of ``dt``), or the variants
            the paper compares, "mlp" (y[t+1] = f(y_t, z[t+1]), not residual) and "gru" (a GRU cell whose hidden
            state is y and whose input is z); the two variants are one step per frame (``dt`` 1, frame_rate 1).
        skip_connections: content maps feed the decoder at every resolution.
        output_activation: "sigmoid" for data in [0, 1], "tanh" for [-1, 1], "none" for normalised data.
        levels: resolution halvings of the encoder (default: down to about 4x4); H and W must be divisible
            by 2^levels.
        min_std: floor of every predicted standard deviation.
    """

    uses_targets = True
    can_sample = True

    def __init__(
        self,
        in_shape: Sequence[int],
        out_frames: int,
        nf: int = 32,
        g_dim: int = 128,
        y_dim: int = 20,
        z_dim: int = 20,
        hidden: int = 256,
        mlp_layers: int = 3,
        lstm_hidden: int = 256,
        content_dim: int = 64,
        num_init_frames: int = 3,
        num_content_frames: int = 3,
        dt: float = 0.5,
        stochastic: bool = True,
        beta: float = 1e-4,
        kl_warmup_steps: int = 0,
        obs_weight: float = 1.0,
        obs_loss: str = "mse",
        dynamics: str = "residual",
        skip_connections: bool = True,
        output_activation: str = "sigmoid",
        levels: int | None = None,
        min_std: float = 1e-3,
    ):
        super().__init__(in_shape, out_frames)
        t_in, c, h, w = self.in_shape
        for name, value in (("nf", nf), ("g_dim", g_dim), ("y_dim", y_dim), ("hidden", hidden),
                            ("lstm_hidden", lstm_hidden), ("out_frames", out_frames)):
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if stochastic and z_dim < 1:
            raise ValueError(f"z_dim must be >= 1 for the stochastic variant, got {z_dim}")
        if mlp_layers < 1:
            raise ValueError(f"mlp_layers must be >= 1, got {mlp_layers}")
        if content_dim < 0:
            raise ValueError(f"content_dim must be >= 0, got {content_dim}")
        if not 1 <= num_init_frames <= t_in:
            raise ValueError(f"num_init_frames must be in [1, T_in={t_in}] (the observed frames), got {num_init_frames}")
        if not 1 <= num_content_frames <= t_in:
            raise ValueError(
                f"num_content_frames must be in [1, T_in={t_in}] (the observed frames), got {num_content_frames}")
        if not 0 < float(dt) <= 1:
            raise ValueError(f"dt must be in (0, 1] (a fraction of the time between two frames), got {dt}")
        if beta < 0 or obs_weight < 0 or kl_warmup_steps < 0:
            raise ValueError(f"beta, obs_weight and kl_warmup_steps must be >= 0, got {beta}, {obs_weight}, "
                             f"{kl_warmup_steps}")
        if dynamics not in DYNAMICS:
            raise ValueError(f"dynamics must be one of {list(DYNAMICS)}, got {dynamics!r}")
        if dynamics != "residual" and float(dt) != 1.0:
            raise ValueError(f"dt must be 1.0 with dynamics: {dynamics} (a step per frame, not an ODE), got {dt}")
        if obs_loss not in OBS_LOSSES:
            raise ValueError(f"obs_loss must be one of {list(OBS_LOSSES)}, got {obs_loss!r}")
        if output_activation not in OUTPUT_ACTIVATIONS:
            raise ValueError(f"output_activation must be one of {list(OUTPUT_ACTIVATIONS)}, got {output_activation!r}")
        if min(h, w) < 8:
            raise ValueError(f"srvp needs frames of at least 8x8 pixels, got {h}x{w}")
        levels = _auto_levels(h, w) if levels is None else int(levels)
        if not 1 <= levels <= MAX_LEVELS:
            raise ValueError(f"levels must be in [1, {MAX_LEVELS}], got {levels}")
        factor = 2**levels
        if h % factor or w % factor:
            raise ValueError(
                f"srvp with levels={levels} needs H and W divisible by 2^{levels} = {factor}, got {h}x{w}; use a "
                f"frame size divisible by 16 (64x64, 32x32, 128x128, ...) or set levels to a smaller value"
            )

        self.nf, self.g_dim, self.y_dim = int(nf), int(g_dim), int(y_dim)
        self.z_dim = int(z_dim) if stochastic else 0
        self.content_dim = int(content_dim)
        self.num_init_frames, self.num_content_frames = int(num_init_frames), int(num_content_frames)
        self.dt = float(dt)
        self.euler_steps = max(1, round(1.0 / self.dt))
        self.stochastic = bool(stochastic)
        self.beta, self.kl_warmup_steps = float(beta), int(kl_warmup_steps)
        self.obs_weight, self.obs_loss = float(obs_weight), obs_loss
        self.levels = levels

        widths = [self.nf * 2 ** min(level, 3) for level in range(levels)]
        last_hw = (h // factor, w // factor)
        self.encoder = FrameEncoder(c, widths, last_hw, self.g_dim)
        self.decoder = FrameDecoder(self.y_dim + self.content_dim, widths, last_hw, c, bool(skip_connections),
                                    output_activation)
        self.content_net = nn.Linear(self.g_dim, self.content_dim) if self.content_dim else None
        init_out = self.y_dim
        self.init_net = _mlp(self.num_init_frames * self.g_dim, hidden, hidden, 1)
        self.init_head = GaussianHead(hidden, init_out, min_std) if self.stochastic else nn.Linear(hidden, init_out)
        self.dynamics_kind = dynamics
        self.dynamics = {"residual": lambda: ResidualField(self.y_dim, self.z_dim, hidden, mlp_layers),
                         "mlp": lambda: MLPStep(self.y_dim, self.z_dim, hidden, mlp_layers),
                         "gru": lambda: GRUStep(self.y_dim, self.z_dim)}[dynamics]()
        if self.stochastic:
            self.prior = nn.Sequential(_mlp(self.y_dim, hidden, hidden, 1), nn.LeakyReLU(0.2, inplace=True),
                                       GaussianHead(hidden, self.z_dim, min_std))
            self.posterior_lstm = nn.LSTM(self.g_dim, lstm_hidden, batch_first=True)
            self.posterior_head = GaussianHead(lstm_hidden, self.z_dim, min_std)
        self.feature_channels = widths[0]

    @classmethod
    def size_multiple(cls, in_shape: Sequence[int], levels: int | None = None, **_) -> int:
        """H and W must be multiples of 2^levels (``levels`` by default: down to about 4x4 pixels)."""
        return 2 ** (_auto_levels(*in_shape[2:]) if levels is None else int(levels))

    # ------------------------------------------------------------------ contract

    @property
    def frames_per_call(self) -> int:
        return self.out_frames

    def _check_input(self, x: Tensor, name: str = "x") -> None:
        if x.dim() != 5 or tuple(x.shape[1:]) != self.in_shape:
            raise ValueError(f"srvp: {name} must have shape (B, {', '.join(map(str, self.in_shape))}) = "
                             f"(B, T_in, C, H, W), got {tuple(x.shape)}")

    # ------------------------------------------------------------------ building blocks

    def encode(self, frames: Tensor) -> tuple[Tensor, list[Tensor]]:
        """(B, T, C, H, W) -> codes (B, T, g_dim) and per level maps (B, T, widths[l], H/2^(l+1), W/2^(l+1))."""
        b, t = frames.shape[:2]
        code, maps = self.encoder(frames.flatten(0, 1))
        return code.view(b, t, -1), [m.view(b, t, *m.shape[1:]) for m in maps]

    def content_frames(self, batch: int, t_in: int, device: torch.device, random: bool) -> Tensor:
        """Indices (B, n) of the observed frames that give w: a random subset per sequence, or evenly spaced."""
        n = self.num_content_frames
        if random:
            return torch.rand(batch, t_in, device=device).argsort(dim=1)[:, :n]
        fixed = torch.linspace(0, t_in - 1, n, device=device).round().long()
        return fixed.unsqueeze(0).expand(batch, n)

    def content(self, codes: Tensor, maps: Sequence[Tensor], random: bool) -> tuple[Tensor | None, list[Tensor]]:
        """Content w from observed codes (B, T_in, g_dim) and maps: a vector (B, content_dim) or None, and
        the mean maps of the chosen frames per level (B, widths[l], h_l, w_l)."""
        b, t_in = codes.shape[:2]
        idx = self.content_frames(b, t_in, codes.device, random)
        rows = torch.arange(b, device=codes.device).unsqueeze(1)
        vector = self.content_net(codes[rows, idx].mean(dim=1)) if self.content_net is not None else None
        return vector, [m[rows, idx].mean(dim=1) for m in maps]

    def initial_state_params(self, codes: Tensor) -> tuple[Tensor, Tensor | None]:
        """q(y_1 | x[1:k]) from the codes of the first k frames (B, k, g_dim): mean (B, y_dim) and std (or None)."""
        hidden = self.init_net(codes[:, : self.num_init_frames].flatten(1))
        if self.stochastic:
            return self.init_head(hidden)
        return self.init_head(hidden), None

    def posterior_params(self, codes: Tensor) -> tuple[Tensor, Tensor]:
        """q(z[t+1] | x[1:t+1]) for t = 1..T-1 from codes (B, T, g_dim): mean and std, each (B, T-1, z_dim)."""
        out, _ = self.posterior_lstm(codes)
        return self.posterior_head(out[:, 1:])

    def substeps(self, frame_rate: int) -> tuple[int, float]:
        """Euler steps between two output frames at ``frame_rate`` and their size (never above 1 / euler_steps)."""
        if not isinstance(frame_rate, int) or isinstance(frame_rate, bool) or frame_rate < 1:
            raise ValueError(f"frame_rate must be an int >= 1, got {frame_rate!r}")
        if frame_rate > 1 and self.dynamics_kind != "residual":
            raise ValueError(f"frame_rate={frame_rate} needs dynamics: residual (an ODE that smaller steps integrate); "
                             f"dynamics: {self.dynamics_kind} makes one step per frame")
        steps = max(1, math.ceil(self.euler_steps / frame_rate))
        return steps, 1.0 / (frame_rate * steps)

    def rollout_states(self, y1: Tensor, num_intervals: int, frame_rate: int = 1,
                       posterior: tuple[Tensor, Tensor] | None = None, return_kl: bool = False
                       ) -> tuple[Tensor, Tensor | None]:
        """Integrate the latent state from y_1 (B, y_dim) over ``num_intervals`` frame intervals.

        Interval i (from frame i+1 to frame i+2, 0-based i) uses z from the posterior when ``posterior``
        (means and stds (B, n, z_dim)) covers it (i < n), else a sample of the prior N(mu(y), sigma(y)) at
        the state y of the interval's start; z is fixed over the interval. Returns the states
        (B, num_intervals * frame_rate + 1, y_dim) at times 1, 1 + 1/frame_rate, ..., and with ``return_kl``
        the KL(q || p) of each posterior-driven interval (B, n) (None when there is none).
        """
        steps, h = self.substeps(frame_rate)
        n_post = 0 if posterior is None else posterior[0].shape[1]
        y, states, kls = y1, [y1], []
        for i in range(num_intervals):
            z = None
            if self.stochastic:
                p_mu, p_sigma = self.prior(y)
                if i < n_post:
                    q_mu, q_sigma = posterior[0][:, i], posterior[1][:, i]
                    z = q_mu + q_sigma * torch.randn_like(q_mu)
                    if return_kl:
                        kls.append(gaussian_kl(q_mu, q_sigma, p_mu, p_sigma))
                else:
                    z = p_mu + p_sigma * torch.randn_like(p_mu)
            for _ in range(frame_rate):
                for _ in range(steps):
                    y = (y + h * self.dynamics(y, z)) if self.dynamics_kind == "residual" else self.dynamics(y, z)
                states.append(y)
        return torch.stack(states, dim=1), (torch.stack(kls, dim=1) if kls else None)

    def decode(self, states: Tensor, content: tuple[Tensor | None, list[Tensor]]) -> tuple[Tensor, Tensor]:
        """States (B, T, y_dim) and content -> frames (B, T, C, H, W) and features (B, T, nf, H, W)."""
        b, t = states.shape[:2]
        vector, maps = content
        code = states
        if vector is not None:
            code = torch.cat([states, vector.unsqueeze(1).expand(b, t, -1)], dim=-1)
        skips = [m.unsqueeze(1).expand(b, t, *m.shape[1:]).flatten(0, 1) for m in maps]
        frames, features = self.decoder(code.flatten(0, 1), skips)
        return frames.view(b, t, *frames.shape[1:]), features.view(b, t, *features.shape[1:])

    # ------------------------------------------------------------------ training and inference

    def _beta(self, step: int | None) -> float:
        if self.kl_warmup_steps and step is not None:
            return self.beta * min(1.0, step / self.kl_warmup_steps)
        return self.beta

    def _training_pass(self, x: Tensor, targets: Tensor | None, step: int | None) -> BackboneOutput:
        """ELBO pass: posterior over every known frame; the future frames and features and the ELBO's other
        terms (``recon_obs``, ``kl_z``, ``kl_y``, already weighted) as auxiliary losses."""
        t_in = x.shape[1]
        seq = x
        if targets is not None:
            expected = (x.shape[0], self.out_frames, *self.in_shape[1:])
            if tuple(targets.shape) != expected:
                raise ValueError(f"srvp: targets must have shape {expected} = (B, T_out, C, H, W), "
                                 f"got {tuple(targets.shape)}")
            seq = torch.cat([x, targets.to(x.dtype)], dim=1)
        codes, maps = self.encode(seq)
        content = self.content(codes[:, :t_in], [m[:, :t_in] for m in maps], random=True)
        y_mu, y_sigma = self.initial_state_params(codes)
        y1 = y_mu if y_sigma is None else y_mu + y_sigma * torch.randn_like(y_mu)
        posterior = self.posterior_params(codes) if self.stochastic else None
        total = t_in + self.out_frames
        states, kl_z = self.rollout_states(y1, total - 1, 1, posterior=posterior, return_kl=True)
        frames, features = self.decode(states, content)

        aux: dict[str, Tensor] = {}
        if self.obs_weight > 0:
            err = F.mse_loss if self.obs_loss == "mse" else F.l1_loss
            aux["recon_obs"] = self.obs_weight * err(frames[:, :t_in], x)
        if self.stochastic:
            beta = self._beta(step)
            # per frame, like the trainer's loss: kl_z is averaged over intervals, kl_y spread over the frames
            aux["kl_z"] = beta * (kl_z.mean() if kl_z is not None else states.new_zeros(()))
            aux["kl_y"] = beta * gaussian_kl(y_mu, y_sigma, torch.zeros_like(y_mu), torch.ones_like(y_sigma)).mean() / total
        return BackboneOutput(frames[:, t_in:], features[:, t_in:], aux)

    def _generate(self, x: Tensor, num_samples: int, frame_rate: int, chunk: int | None = None,
                  content_from: Tensor | None = None, with_observed: bool = False,
                  keep_features: bool = True) -> tuple[Tensor, Tensor | None]:
        """``num_samples`` futures of x (B, T_in, C, H, W): frames (B, K, T_out * r, C, H, W) and features (None
        unless ``keep_features``: at full resolution they are nf times the frames, too much to keep for K = 100).

        The posterior drives the observed intervals, the prior the future ones. Samples are drawn in
        chunks of ``chunk`` (default: about 64 sequences per decoder call). ``content_from`` (B, T_in, C, H, W):
        decode with the content variable of these frames instead of x's (the content swap); ``with_observed``:
        also return the frames of the observed states (T_in - 1) * r + 1 more frames, first.
        """
        b, t_in = x.shape[:2]
        codes, maps = self.encode(x)
        vector, skip_maps = self.content(*((codes, maps) if content_from is None else self.encode(content_from)),
                                         random=False)
        y_mu, y_sigma = self.initial_state_params(codes)
        posterior = self.posterior_params(codes) if self.stochastic else None
        start = 0 if with_observed else (t_in - 1) * frame_rate + 1  # else the first state after the last observed frame
        intervals = t_in - 1 + self.out_frames
        draws = num_samples if self.stochastic else 1
        chunk = max(1, min(draws, chunk or 64 // max(1, b)))

        def rep(t: Tensor | None, k: int):
            return None if t is None else t.repeat_interleave(k, dim=0)

        frames, features = [], []
        for first in range(0, draws, chunk):
            k = min(chunk, draws - first)
            y1 = rep(y_mu, k) if y_sigma is None else rep(y_mu, k) + rep(y_sigma, k) * torch.randn(
                b * k, self.y_dim, device=x.device, dtype=y_mu.dtype)
            post = None if posterior is None else (rep(posterior[0], k), rep(posterior[1], k))
            states, _ = self.rollout_states(y1, intervals, frame_rate, posterior=post)
            f, feat = self.decode(states[:, start:], (rep(vector, k), [rep(m, k) for m in skip_maps]))
            frames.append(f.view(b, k, *f.shape[1:]))
            if keep_features:
                features.append(feat.view(b, k, *feat.shape[1:]))
            del feat
        frames = torch.cat(frames, dim=1)
        features = torch.cat(features, dim=1) if keep_features else None
        if draws < num_samples:  # deterministic: every sample is the same path
            frames = frames.expand(-1, num_samples, *frames.shape[2:])
            features = None if features is None else features.expand(-1, num_samples, *features.shape[2:])
        return frames, features

    def forward(self, x: Tensor, return_features: bool = False, targets: Tensor | None = None,
                step: int | None = None) -> BackboneOutput:
        """x (B, T_in, C, H, W) -> frames (B, T_out, C, H, W) (and features (B, T_out, nf, H, W) when asked).

        Training mode: the posterior-driven reconstruction of the targets (the ELBO's), with ``recon_obs``,
        ``kl_z`` and ``kl_y`` as auxiliary losses. Eval mode: one prior sample (the deterministic path for
        ``stochastic: false``), no auxiliary losses.
        """
        self._check_input(x)
        if self.training:
            out = self._training_pass(x, targets, step)
        else:
            frames, features = self._generate(x, 1, 1, keep_features=return_features)
            out = BackboneOutput(frames[:, 0], None if features is None else features[:, 0])
        return out if return_features else BackboneOutput(out.frames, None, out.aux_losses)

    def content_swap(self, x_content: Tensor, x_dynamics: Tensor) -> Tensor:
        """The content of one sequence with the dynamics of another: the states of ``x_dynamics`` (its y_1, the
        posterior over its observed frames, then one prior sample) decoded with the content variable (vector and
        skip maps) of ``x_content``. Both (B, T_in, C, H, W); returns (B, T_in + T_out, C, H, W), the observed
        times first. With the same sequence as both it is that sequence's reconstruction and prediction."""
        self._check_input(x_content, "x_content")
        self._check_input(x_dynamics, "x_dynamics")
        if x_content.shape[0] != x_dynamics.shape[0]:
            raise ValueError(f"srvp: x_content and x_dynamics need the same batch size, got {x_content.shape[0]} "
                             f"and {x_dynamics.shape[0]}")
        frames, _ = self._generate(x_dynamics, 1, 1, content_from=x_content, with_observed=True, keep_features=False)
        return frames[:, 0]

    def sample(self, x: Tensor, num_samples: int, frame_rate: int = 1, return_features: bool = False,
               chunk: int | None = None) -> BackboneOutput:
        """``num_samples`` predicted futures of x (B, T_in, C, H, W): frames (B, K, T_out * frame_rate, C, H, W).

        With ``frame_rate`` r > 1 the state is decoded every 1/r of the training frame interval (smaller
        Euler steps): output frame j (0-based) is at time T_in + (j + 1) / r, so frames r-1, 2r-1, ...
        are at the training frame times. The deterministic variant returns K identical samples.
        With ``return_features`` also the decoder features (B, K, T_out * r, nf, H, W).
        """
        self._check_input(x)
        if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
            raise ValueError(f"num_samples must be an int >= 1, got {num_samples!r}")
        self.substeps(frame_rate)  # checks frame_rate
        frames, features = self._generate(x, num_samples, frame_rate, chunk, keep_features=return_features)
        return BackboneOutput(frames, features)
