"""Contextual bandits with a linear payoff: epsilon-greedy, LinUCB and linear Thompson sampling.

Every step the learner sees one feature vector x_{t,a} in R^d per arm a and assumes the
expected reward is linear in it, E[r | x] = x . theta* (the shared-parameter form of Chu et
al., 2011). All three keep the same ridge-regression statistics

  A_t = lambda I + sum_s x_s x_s^T,      b_t = sum_s r_s x_s,      theta_hat = A_t^-1 b_t,

and differ only in how they pick the next arm:

  epsilon-greedy:  argmax_a x_a . theta_hat, or a uniform arm with probability epsilon;
  LinUCB:          argmax_a x_a . theta_hat + alpha * sqrt(x_a^T A^-1 x_a)
                   (Li et al., 2010, eq. 5: optimism in the face of uncertainty);
  Thompson:        theta_tilde ~ N(theta_hat, v^2 A^-1), argmax_a x_a . theta_tilde
                   (Agrawal & Goyal, 2013, Algorithm 1: the Gaussian posterior of Bayesian
                   linear regression under a N(0, (v^2 / lambda) I) prior and noise variance v^2).

A^-1 is kept directly and updated by the Sherman-Morrison formula, O(d^2) per step instead
of an O(d^3) inversion:  (A + x x^T)^-1 = A^-1 - (A^-1 x)(A^-1 x)^T / (1 + x^T A^-1 x).

The statistics are torch buffers (float64), so a learner saves and loads with its state dict;
the arithmetic runs on numpy views of the same memory.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class LinearBandit(nn.Module):
    """Ridge-regression statistics shared by the three exploration rules."""

    def __init__(self, dim: int, reg: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("A_inv", torch.eye(dim, dtype=torch.float64) / reg)  # (d, d)
        self.register_buffer("b", torch.zeros(dim, dtype=torch.float64))          # (d,)

    @property
    def a_inv(self) -> np.ndarray:
        return self.A_inv.numpy()  # a view: in-place updates reach the buffer

    def theta(self) -> np.ndarray:
        """theta_hat = A^-1 b, the ridge estimate (and the posterior mean)."""
        return self.a_inv @ self.b.numpy()                                        # (d,)

    def update(self, x: np.ndarray, reward: float) -> None:
        """Add one observation (x, r): Sherman-Morrison on A^-1, b += r x."""
        a_inv_x = self.a_inv @ x                                                  # (d,)
        self.a_inv[...] -= np.outer(a_inv_x, a_inv_x) / (1.0 + x @ a_inv_x)
        self.b.numpy()[...] += reward * x

    def greedy(self, features: np.ndarray) -> int:
        """argmax_a x_a . theta_hat over the (n_arms, d) features: exploitation only."""
        return int(np.argmax(features @ self.theta()))

    def select(self, features: np.ndarray, rng: np.random.Generator) -> int:
        raise NotImplementedError


class EpsilonGreedy(LinearBandit):
    def __init__(self, dim: int, reg: float = 1.0, epsilon: float = 0.1) -> None:
        super().__init__(dim, reg)
        self.epsilon = epsilon

    def select(self, features: np.ndarray, rng: np.random.Generator) -> int:
        if rng.random() < self.epsilon:
            return int(rng.integers(len(features)))
        return self.greedy(features)


class LinUCB(LinearBandit):
    def __init__(self, dim: int, reg: float = 1.0, alpha: float = 1.0) -> None:
        super().__init__(dim, reg)
        self.alpha = alpha

    def ucb(self, features: np.ndarray) -> np.ndarray:
        """x_a . theta_hat + alpha sqrt(x_a^T A^-1 x_a) for every arm, (n_arms,)."""
        width = np.sqrt(np.einsum("ad,de,ae->a", features, self.a_inv, features))
        return features @ self.theta() + self.alpha * width

    def select(self, features: np.ndarray, rng: np.random.Generator) -> int:
        return int(np.argmax(self.ucb(features)))


class LinearThompson(LinearBandit):
    def __init__(self, dim: int, reg: float = 1.0, v: float = 0.5) -> None:
        super().__init__(dim, reg)
        self.v = v

    def posterior(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and covariance of theta: N(A^-1 b, v^2 A^-1)."""
        return self.theta(), self.v ** 2 * self.a_inv

    def sample_theta(self, rng: np.random.Generator) -> np.ndarray:
        mean, cov = self.posterior()
        # theta = mean + L z with L L^T = cov; symmetrise against round-off first
        chol = np.linalg.cholesky(0.5 * (cov + cov.T))
        return mean + chol @ rng.standard_normal(len(mean))

    def select(self, features: np.ndarray, rng: np.random.Generator) -> int:
        return int(np.argmax(features @ self.sample_theta(rng)))
