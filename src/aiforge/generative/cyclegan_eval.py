"""Grading an unpaired translation between printed and handwritten digits.

CycleGAN never sees a label, so nothing forces a translated "3" to stay a 3. Whether it does
is measured here with a classifier per target domain:

- printed -> handwritten: the digits-FD classifier of `generative.evaluation` (trained on
  real handwritten digits, 98.9 % test accuracy) reads the translated test printed digits;
  `identity_kept_p2h` is the share it reads as the digit that was printed.
- handwritten -> printed: a classifier of the same architecture trained here on the rendered
  printed training digits reads the translated handwritten test digits (`identity_kept_h2p`).

Each is anchored to the same classifier on the *untranslated* source images
(`identity_untranslated_*`): how much of the score the translation itself earns. Realism of
the printed -> handwritten direction is the digits-FD of the translated images against the
real handwritten test half B (`digits_fd_translated`), next to that of the printed source
(`digits_fd_printed`); `fd_gain` is the difference. Cycle reconstruction errors are the mean
absolute pixel error (values in [0, 1]) of a -> G -> F and b -> F -> G on the test sets.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from aiforge.generative.evaluation import (
    DigitsFeatureNet,
    anchors,
    digits_fd,
    feature_net,
    train_digits_classifier,
)

Translate = Callable[[torch.Tensor], torch.Tensor]
Labelled = tuple[torch.Tensor, torch.Tensor]
CLASSIFIER_SEED, CLASSIFIER_EPOCHS, CLASSIFIER_BATCH, CLASSIFIER_LR = 0, 8, 64, 3e-3


def train_printed_classifier(x: torch.Tensor, y: torch.Tensor, seed: int = CLASSIFIER_SEED) -> DigitsFeatureNet:
    """The digits-FD architecture trained on printed digits (N, 1, 8, 8), seeded and on one
    thread so every run grades with the same network; the caller's RNG is left as it was.
    `cyclegan` trains its semantic-loss classifier f_S here too, with another seed."""
    def batch_loss(net: DigitsFeatureNet, idx: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(net(x[idx]), y[idx])

    return train_digits_classifier(seed, len(y), CLASSIFIER_EPOCHS, CLASSIFIER_BATCH, CLASSIFIER_LR, batch_loss)


@torch.no_grad()
def accuracy(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    return float((net(x.clamp(0, 1)).argmax(1) == y).float().mean())


@torch.no_grad()
def evaluate_translation(to_handwritten: Translate, to_printed: Translate, *,
                         printed_train: Labelled, printed_test: Labelled,
                         handwritten_test: Labelled) -> dict[str, float]:
    """Identity kept in both directions, cycle errors, digits-FD before and after."""
    (xp, yp), (xh, yh) = printed_test, handwritten_test
    hand_clf, printed_clf = feature_net(), train_printed_classifier(*printed_train)
    p2h, h2p = to_handwritten(xp), to_printed(xh)                    # (N, 1, 8, 8) in [0, 1]
    fd_translated, fd_printed = digits_fd(p2h), digits_fd(xp)
    ref = anchors()
    return {
        "identity_kept_p2h": accuracy(hand_clf, p2h, yp),
        "identity_untranslated_p2h": accuracy(hand_clf, xp, yp),
        "identity_kept_h2p": accuracy(printed_clf, h2p, yh),
        "identity_untranslated_h2p": accuracy(printed_clf, xh, yh),
        "printed_classifier_accuracy": accuracy(printed_clf, xp, yp),
        "cycle_l1_printed": float((to_printed(p2h) - xp).abs().mean()),
        "cycle_l1_handwritten": float((to_handwritten(h2p) - xh).abs().mean()),
        "digits_fd_translated": fd_translated,
        "digits_fd_printed": fd_printed,
        "fd_gain": fd_printed - fd_translated,
        "fd_floor": ref["fd_floor_real_halves"],
        "fd_ceiling": ref["fd_ceiling_gaussian"],
    }
