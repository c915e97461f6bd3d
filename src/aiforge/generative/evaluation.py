"""Evaluation of generated digits that means something offline: "digits-FD" and class coverage.

FID (Heusel et al., 2017) compares generated and real images by the Fréchet distance between
two Gaussians fitted to their features in a pre-trained Inception network:

    FD = |mu_1 - mu_2|^2 + tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2))          (Dowson & Landau, 1982)

Inception weights cannot be downloaded here and would not suit 8x8 digits anyway, so the
feature extractor is a small digits classifier trained here (`DigitsFeatureNet`, 32 features
before its last layer). Its trained weights are cached outside git (``$AIFORGE_CACHE`` or
``~/.cache/aiforge``): training is seeded and single-threaded, so every machine rebuilds the
same network. "digits-FD" is therefore NOT comparable with published FID numbers; it ranks
models of the 8x8 digits against each other and against two anchors computed the same way:

- floor: half A of the real test set against half B (what a perfect generator would score
  with the same number of images);
- ceiling: a simple baseline, a single full-covariance Gaussian fitted to the training
  pixels (blurry, often classless blobs).

Limits: with 180 reference images and 32 features the covariance estimate is noisy and FD is
biased upwards for small sample sizes (Chong & Forsyth, 2020), so generated images are scored
in chunks of exactly the reference size and the chunk scores averaged. Class coverage is the
share of samples the same classifier assigns to each class.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F
from safetensors.torch import load_model, save_model
from torch import nn

from aiforge.data.digits import digits_splits
from aiforge.generative.data import real_test_halves

FEATURES = 32
CLASSES = 10
FEATURE_NET_VERSION = "digits-features-v2"  # bump when the net or its training changes
DCGAN_DIGITS_FD = 17.1
"""generative.dcgan's digits-FD, mean of seeds 0 / 1 / 2 (18.0 / 13.0 / 20.5; docs/step3-generative.md):
the score the issue's bars for the DDPM ("best of all recipes") and the StyleGAN ("below DCGAN's")
are read against."""
_TRAIN_SEED, _EPOCHS, _BATCH, _LR = 0, 30, 64, 3e-3


# --- the feature extractor ----------------------------------------------------------------

class DigitsFeatureNet(nn.Module):
    """conv-conv-pool twice, then a 32-wide layer whose pre-activations are the features."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(),
        )
        self.embed = nn.Linear(64 * 2 * 2, FEATURES)
        self.classify = nn.Sequential(nn.ReLU(), nn.Dropout(0.2), nn.Linear(FEATURES, CLASSES))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.conv(x))                 # (B, 1, 8, 8) -> (B, 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x))          # (B, 10)


def cache_dir() -> Path:
    return Path(os.environ.get("AIFORGE_CACHE", "~/.cache/aiforge")).expanduser() / "generative"


def random_shift(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Translate each image (B, 1, H, W) by up to one pixel (zero fill), one offset per image:
    a classifier must not be fooled by a generator that places a digit one pixel off."""
    b, _, h, w = x.shape
    padded = F.pad(x, [1, 1, 1, 1])
    dy, dx = torch.randint(0, 3, (2, b), generator=generator).tolist()
    return torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(b)])


BatchLoss = Callable[[DigitsFeatureNet, torch.Tensor], torch.Tensor]
"""(network, indices of one batch) -> the loss of that batch."""


def train_digits_classifier(seed: int, n: int, epochs: int, batch: int, lr: float, batch_loss: BatchLoss,
                            generator: torch.Generator | None = None) -> DigitsFeatureNet:
    """A DigitsFeatureNet trained seeded and on one thread (the thread count changes the order
    of float sums, hence the weights), so every machine gets the same network: AdamW with a
    one-cycle schedule, `epochs` passes over the indices 0..n-1 in batches, shuffled by
    `generator` (None: torch's global RNG, seeded here). The caller's RNG state and thread
    count are left as they were; grads are on even when the caller is under no_grad."""
    threads = torch.get_num_threads()
    with torch.random.fork_rng(), torch.enable_grad():
        torch.set_num_threads(1)
        torch.manual_seed(seed)
        net = DigitsFeatureNet()
        opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=5e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * ((n + batch - 1) // batch))
        net.train()
        for _ in range(epochs):
            for idx in torch.randperm(n, generator=generator).split(batch):
                loss = batch_loss(net, idx)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
    torch.set_num_threads(threads)
    return net.eval()


def train_feature_net() -> DigitsFeatureNet:
    """Train the feature extractor on the digits' train split, with one-pixel shifts."""
    data = digits_splits()["train"]
    generator = torch.Generator().manual_seed(_TRAIN_SEED)       # batch order and shifts

    def batch_loss(net: DigitsFeatureNet, idx: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(net(random_shift(data.x[idx], generator)), data.y[idx])

    return train_digits_classifier(_TRAIN_SEED, len(data.y), _EPOCHS, _BATCH, _LR, batch_loss, generator)


@functools.cache
def feature_net() -> DigitsFeatureNet:
    """The cached feature extractor, trained on first use (about 20 s on one core)."""
    path = cache_dir() / f"{FEATURE_NET_VERSION}.safetensors"
    net = DigitsFeatureNet()
    if path.is_file():
        load_model(net, str(path))
        return net.eval()
    net = train_feature_net()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    save_model(net, tmp)
    os.replace(tmp, path)  # atomic: a concurrent reader sees no half-written file
    return net


@torch.no_grad()
def features_and_labels(images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(N, 1, 8, 8) in [0, 1] -> features (N, 32) float64 and predicted classes (N,)."""
    net = feature_net()
    feats = torch.cat([net.features(chunk) for chunk in images.float().clamp(0, 1).split(512)])
    labels = net.classify(feats).argmax(1)
    return feats.double().numpy(), labels.numpy()


# --- the Fréchet distance -----------------------------------------------------------------

def gaussian_stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D)."""
    return feats.mean(0), np.cov(feats, rowvar=False)


def frechet_distance(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)): the squared 2-Wasserstein distance
    between N(mu1, S1) and N(mu2, S2)."""
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        # S1 S2 is singular: nudge both diagonals, as the FID reference code does.
        eye = np.eye(len(mu1)) * 1e-6
        covmean = scipy.linalg.sqrtm((s1 + eye) @ (s2 + eye))
    covmean = np.real(covmean)  # round-off leaves tiny imaginary parts
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def feature_fd(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N, D) and (M, D)."""
    return frechet_distance(*gaussian_stats(a), *gaussian_stats(b))


# --- scoring generated images -------------------------------------------------------------

@dataclass(frozen=True)
class Reference:
    """Features of test half B, the set every sample is compared with."""

    feats: np.ndarray  # (180, 32)

    @property
    def size(self) -> int:
        return len(self.feats)


@functools.cache
def reference() -> Reference:
    return Reference(features_and_labels(real_test_halves()[1].x)[0])


def digits_fd(images: torch.Tensor) -> float:
    """Mean FD of chunks of `reference().size` images against test half B."""
    ref = reference()
    if len(images) < ref.size:
        raise ValueError(f"digits-FD needs at least {ref.size} images, got {len(images)}")
    feats = features_and_labels(images)[0]
    chunks = [feats[i:i + ref.size] for i in range(0, len(feats) - ref.size + 1, ref.size)]
    return float(np.mean([feature_fd(chunk, ref.feats) for chunk in chunks]))


def class_shares(images: torch.Tensor) -> np.ndarray:
    """(10,) share of images the feature classifier assigns to each class."""
    labels = features_and_labels(images)[1]
    return np.bincount(labels, minlength=CLASSES) / len(labels)


def score_samples(images: torch.Tensor) -> dict[str, float]:
    """digits-FD and class coverage of generated images (N, 1, 8, 8) in [0, 1]."""
    shares = class_shares(images)
    return {
        "digits_fd": digits_fd(images),
        "classes_covered": float((shares > 0).sum()),
        "min_class_share": float(shares.min()),
        "max_class_share": float(shares.max()),
        # the balance test for a generator: every class between 5 and 15 % of samples
        "classes_within_5_15pct": float(((shares >= 0.05) & (shares <= 0.15)).sum()),
    }


def gaussian_baseline(n: int, seed: int = 0) -> torch.Tensor:
    """The ceiling's generator: one full-covariance Gaussian over the 64 training pixels,
    samples clipped to [0, 1]."""
    x = digits_splits()["train"].x.flatten(1).double().numpy()   # (N, 64)
    rng = np.random.default_rng(seed)
    samples = rng.multivariate_normal(x.mean(0), np.cov(x, rowvar=False), size=n)
    return torch.from_numpy(samples.clip(0, 1)).float().view(n, 1, 8, 8)


@functools.cache
def anchors() -> dict[str, float]:
    """The scale every digits-FD is read on: floor (real vs real) and ceiling (baseline)."""
    half_a, _ = real_test_halves()
    ref = reference()
    return {
        "fd_floor_real_halves": digits_fd(half_a.x),
        "fd_ceiling_gaussian": digits_fd(gaussian_baseline(5 * ref.size)),
        "feature_net_test_accuracy": feature_net_accuracy(),
    }


@torch.no_grad()
def feature_net_accuracy() -> float:
    test = digits_splits()["test"]
    return float((feature_net()(test.x).argmax(1) == test.y).float().mean())
