"""digits-FD: the Fréchet distance against closed forms, its anchors, the feature network."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from aiforge.generative import evaluation as ev
from aiforge.generative.data import real_test_halves


def _random_spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T + d * np.eye(d)


def test_fd_of_identical_statistics_is_zero():
    rng = np.random.default_rng(0)
    mu, s = rng.normal(size=6), _random_spd(rng, 6)
    assert ev.frechet_distance(mu, s, mu, s) == pytest.approx(0.0, abs=1e-8)


def test_fd_matches_the_closed_form_for_diagonal_gaussians():
    # Commuting covariances: tr(S1 + S2 - 2 sqrt(S1 S2)) = sum (sqrt(s1) - sqrt(s2))^2.
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    s1, s2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    assert ev.frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-10)


def test_fd_matches_the_symmetric_form_for_full_covariances():
    # tr sqrt(S1 S2) = tr sqrt(S1^1/2 S2 S1^1/2): computed here by eigendecompositions alone.
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    s1, s2 = _random_spd(rng, 5), _random_spd(rng, 5)
    w, v = np.linalg.eigh(s1)
    root1 = v @ np.diag(np.sqrt(w)) @ v.T
    inner = np.linalg.eigvalsh(root1 @ s2 @ root1)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sum(np.sqrt(inner))
    assert ev.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


def test_fd_of_samples_approaches_the_population_value():
    rng = np.random.default_rng(2)
    a = rng.normal(0.0, 1.0, size=(20000, 3))
    b = rng.normal(0.5, 2.0, size=(20000, 3))
    expected = 3 * 0.5**2 + 3 * (1.0 - 2.0) ** 2  # 3.75
    assert ev.feature_fd(a, b) == pytest.approx(expected, rel=0.03)


def test_fd_grows_with_the_shift_between_sets():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(2000, 4))
    fds = [ev.feature_fd(a, rng.normal(size=(2000, 4)) + shift) for shift in (0.0, 0.5, 1.0, 2.0)]
    assert fds == sorted(fds) and fds[0] < 0.05 < fds[1]


def test_feature_net_is_an_accurate_digits_classifier():
    assert ev.feature_net_accuracy() >= 0.97


def test_feature_net_training_is_reproducible():
    cached = ev.feature_net()
    fresh = ev.train_feature_net()
    for (name, a), (_, b) in zip(cached.state_dict().items(), fresh.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_anchors_order_real_below_degraded_below_baseline():
    half_a, _ = real_test_halves()
    anchors = ev.anchors()
    floor, ceiling = anchors["fd_floor_real_halves"], anchors["fd_ceiling_gaussian"]
    assert floor < 0.2 * ceiling
    shifted = torch.roll(half_a.x, shifts=2, dims=3)  # every digit two pixels to the right
    blurred = F.avg_pool2d(half_a.x, 3, stride=1, padding=1)
    assert floor < ev.digits_fd(blurred) and floor < ev.digits_fd(shifted)


def test_class_coverage_of_real_digits_is_balanced_and_of_one_digit_is_not():
    half_a, _ = real_test_halves()
    shares = ev.class_shares(half_a.x)
    assert shares.sum() == pytest.approx(1.0) and shares.min() > 0.07
    ones = half_a.x[half_a.y == 1]
    scores = ev.score_samples(torch.cat([ones] * 10))
    assert scores["max_class_share"] > 0.9 and scores["classes_covered"] <= 3
    assert scores["classes_within_5_15pct"] == 0
    assert ev.score_samples(torch.cat([half_a.x] * 2))["classes_within_5_15pct"] == 10


def test_digits_fd_refuses_too_few_images():
    with pytest.raises(ValueError, match="at least"):
        ev.digits_fd(torch.zeros(10, 1, 8, 8))
