import pytest
import torch

from aiforge.core import run_recipe
from aiforge.data.digits import digits_splits
from aiforge.vision.cnn_digits import DigitsCNN, random_shift


def test_split_is_fixed_stratified_and_disjoint():
    a, b = digits_splits(), digits_splits()
    assert torch.equal(a["test"].x, b["test"].x)
    sizes = {k: len(v.y) for k, v in a.items()}
    assert sum(sizes.values()) == 1797
    counts = torch.bincount(a["test"].y, minlength=10)
    assert counts.min() >= 34 and counts.max() <= 37  # stratified: about 36 per class
    flat = {tuple(x.flatten().tolist()) for x in a["test"].x}
    assert not any(tuple(x.flatten().tolist()) in flat for x in a["train"].x[:200])


def test_shift_moves_pixels_without_changing_shape():
    torch.manual_seed(0)
    x = torch.zeros(16, 1, 8, 8)
    x[:, :, 4, 4] = 1
    shifted = random_shift(x, 1)
    assert shifted.shape == x.shape and shifted.sum() == 16
    assert (shifted[:, 0, 4, 4] == 0).any()


def test_model_output_shape():
    assert DigitsCNN(8)(torch.zeros(3, 1, 8, 8)).shape == (3, 10)


def test_same_seed_same_metrics(tmp_path):
    a = run_recipe("vision.cnn-digits", quick=True, seed=5, out=tmp_path / "a", quiet=True, track=False)
    b = run_recipe("vision.cnn-digits", quick=True, seed=5, out=tmp_path / "b", quiet=True, track=False)
    assert a.metrics == b.metrics


@pytest.mark.slow
def test_full_setting_meets_its_bar(tmp_path):
    result = run_recipe("vision.cnn-digits", out=tmp_path, quiet=True, track=False)
    assert result.passed and result.seconds < 120
