"""Diffusion without the network: noise schedules, the forward process q(x_t | x_0), and the
ancestral DDPM and DDIM samplers. Any epsilon-predicting network plugs in as `eps_fn`.

Notation of Ho et al. (2020), "Denoising Diffusion Probabilistic Models" (DDPM):
beta_t is the noise added at step t, alpha_t = 1 - beta_t, abar_t = prod_{s<=t} alpha_s.
Timesteps are 0-indexed (t = 0 .. T-1) as in diffusers, so abar[0] = 1 - beta[0].

  forward  (eq. 4)   x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps,   eps ~ N(0, I)
  x_0 from eps       x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t)
  DDPM step (eq. 7)  x_{t-1} = c0 x0_hat + ct x_t + sigma_t z, with the posterior q(x_{t-1}|x_t,x_0):
                     c0 = sqrt(abar_{t-1}) beta_t / (1 - abar_t),
                     ct = sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t),
                     sigma_t^2 = beta~_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t   ("fixed small")
  DDIM step          Song et al. (2021), eq. 12, from t to an earlier t' (several steps at once):
                     x_t' = sqrt(abar_t') x0_hat + sqrt(1 - abar_t' - s^2) eps_hat + s z,
                     s = eta sqrt((1 - abar_t') / (1 - abar_t)) sqrt(1 - abar_t / abar_t')
                     (eta = 0: deterministic; eta = 1: the DDPM posterior again).

Like diffusers' DDPMScheduler and DDIMScheduler (defaults), x0_hat may be clipped to [-1, 1]
and the step before t = 0 uses abar = 1; tests check both samplers against them numerically.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t (B, ...), t (B,)) -> eps
ScheduleKind = Literal["linear", "cosine"]


# --- noise schedules --------------------------------------------------------------------------

@dataclass(frozen=True)
class NoiseSchedule:
    betas: torch.Tensor  # (T,) float32

    @property
    def steps(self) -> int:
        return len(self.betas)

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return torch.cumprod(1.0 - self.betas, dim=0)  # (T,) abar_t

    def abar(self, t: int) -> torch.Tensor:
        """abar_t, with abar = 1 before the first step (t < 0)."""
        return self.alphas_cumprod[t] if t >= 0 else torch.tensor(1.0)  # diffusers: set_alpha_to_one


def linear_betas(steps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """DDPM's schedule (section 4): beta rises linearly from 1e-4 to 0.02 over T = 1000 steps."""
    return torch.linspace(beta_start, beta_end, steps, dtype=torch.float32)


def cosine_betas(steps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal (2021), eq. 17: abar(t) = cos^2(((t/T + s) / (1 + s)) pi/2), and
    beta_t = 1 - abar(t+1)/abar(t), clipped at 0.999 to avoid a singularity at t = T."""
    def abar(u: float) -> float:
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    betas = [min(1 - abar((i + 1) / steps) / abar(i / steps), max_beta) for i in range(steps)]
    return torch.tensor(betas, dtype=torch.float32)


def make_schedule(kind: ScheduleKind, steps: int) -> NoiseSchedule:
    return NoiseSchedule(linear_betas(steps) if kind == "linear" else cosine_betas(steps))


# --- forward process ---------------------------------------------------------------------------

def _per_sample(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """values[t] reshaped to broadcast over an image batch: (B,) -> (B, 1, 1, 1)."""
    return values[t.to(values.device)].view(-1, *([1] * (like.dim() - 1))).to(like)


def q_sample(schedule: NoiseSchedule, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps (DDPM eq. 4), one t per image: (B, ...)."""
    abar = _per_sample(schedule.alphas_cumprod, t, x0)
    return abar.sqrt() * x0 + (1 - abar).sqrt() * noise


def predict_x0(x_t: torch.Tensor, eps: torch.Tensor, abar_t: torch.Tensor, clip: bool) -> torch.Tensor:
    x0 = (x_t - (1 - abar_t).sqrt() * eps) / abar_t.sqrt()
    return x0.clamp(-1, 1) if clip else x0


# --- one reverse step ---------------------------------------------------------------------------

def ddpm_step(schedule: NoiseSchedule, eps: torch.Tensor, t: int, x_t: torch.Tensor,
              noise: torch.Tensor | None, clip: bool = True) -> torch.Tensor:
    """x_{t-1} from x_t by the posterior mean and "fixed small" variance (DDPM eqs. 6-7)."""
    abar_t, abar_prev = schedule.abar(t), schedule.abar(t - 1)
    alpha_t = abar_t / abar_prev
    beta_t = 1 - alpha_t
    x0 = predict_x0(x_t, eps, abar_t, clip)
    mean = (abar_prev.sqrt() * beta_t / (1 - abar_t)) * x0 + (alpha_t.sqrt() * (1 - abar_prev) / (1 - abar_t)) * x_t
    if t == 0 or noise is None:
        return mean
    variance = ((1 - abar_prev) / (1 - abar_t) * beta_t).clamp(min=1e-20)
    return mean + variance.sqrt() * noise


def ddim_step(schedule: NoiseSchedule, eps: torch.Tensor, t: int, t_prev: int, x_t: torch.Tensor,
              eta: float = 0.0, noise: torch.Tensor | None = None, clip: bool = True) -> torch.Tensor:
    """x_{t'} from x_t with t' = t_prev < t (DDIM eq. 12); t_prev < 0 means abar = 1."""
    abar_t, abar_prev = schedule.abar(t), schedule.abar(t_prev)
    x0 = predict_x0(x_t, eps, abar_t, clip)
    variance = (1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev)  # eq. 16 with eta = 1
    sigma = eta * variance.sqrt()
    x_prev = abar_prev.sqrt() * x0 + (1 - abar_prev - sigma**2).sqrt() * eps
    if eta > 0:
        if noise is None:
            raise ValueError("ddim_step with eta > 0 needs noise")
        x_prev = x_prev + sigma * noise
    return x_prev


def ddim_timesteps(train_steps: int, sample_steps: int) -> list[int]:
    """Every (T // K)-th timestep counting up from 0, newest first: diffusers' "leading"
    spacing, e.g. T=1000, K=50 -> 980, 960, ..., 0."""
    if not 1 <= sample_steps <= train_steps:
        raise ValueError(f"sample steps must lie in 1..{train_steps}, got {sample_steps}")
    ratio = train_steps // sample_steps
    return [i * ratio for i in reversed(range(sample_steps))]


# --- whole samplers -----------------------------------------------------------------------------

# Noise is always drawn on the CPU from `generator` and then moved to `device`, so that a seed
# gives the same images on every device (up to the device's arithmetic).

def _eps(eps_fn: EpsFn, x: torch.Tensor, t: int) -> torch.Tensor:
    return eps_fn(x, torch.full((len(x),), t, dtype=torch.long, device=x.device))


def _randn(shape: tuple[int, ...], generator: torch.Generator, device: torch.device | str) -> torch.Tensor:
    return torch.randn(shape, generator=generator).to(device)


@torch.no_grad()
def sample_ddpm(eps_fn: EpsFn, schedule: NoiseSchedule, shape: tuple[int, ...],
                generator: torch.Generator, clip: bool = True,
                device: torch.device | str = "cpu") -> torch.Tensor:
    """Ancestral sampling (DDPM algorithm 2): T network evaluations from x_T ~ N(0, I)."""
    x = _randn(shape, generator, device)
    for t in reversed(range(schedule.steps)):
        noise = _randn(shape, generator, device) if t > 0 else None
        x = ddpm_step(schedule, _eps(eps_fn, x, t), t, x, noise, clip)
    return x


@torch.no_grad()
def sample_ddim(eps_fn: EpsFn, schedule: NoiseSchedule, shape: tuple[int, ...], steps: int,
                generator: torch.Generator, eta: float = 0.0, clip: bool = True,
                device: torch.device | str = "cpu") -> torch.Tensor:
    """DDIM sampling with `steps` network evaluations (Song et al., 2021, section 4.2)."""
    timesteps = ddim_timesteps(schedule.steps, steps)
    ratio = schedule.steps // steps
    x = _randn(shape, generator, device)
    for t in timesteps:
        noise = _randn(shape, generator, device) if eta > 0 else None
        x = ddim_step(schedule, _eps(eps_fn, x, t), t, t - ratio, x, eta, noise, clip)
    return x
