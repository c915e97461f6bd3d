"""GAN data augmentation: the gain arithmetic, the class balance of the labelled and synthetic
sets, DiffAugment and the mode-seeking term, classifier learning and determinism, the quick
recipe and its saved generator."""

import pytest
import torch

from aiforge.core import load_model, run_recipe
from aiforge.data.digits import DigitsSplit, digits_splits
from aiforge.generative import augment
from aiforge.generative.dcgan import Generator
from aiforge.generative.evaluation import features_and_labels


def test_gains_are_accuracy_differences_in_points_per_seed_and_their_mean():
    g = augment.gains([0.80, 0.90, 0.85], [0.83, 0.89, 0.88])
    assert g["gain_points_seed0"] == pytest.approx(3.0)
    assert g["gain_points_seed1"] == pytest.approx(-1.0)
    assert g["gain_points_seed2"] == pytest.approx(3.0)
    assert g["gain_points_mean"] == pytest.approx(5.0 / 3)
    assert g["accuracy_baseline_mean"] == pytest.approx(0.85)
    assert g["accuracy_augmented_mean"] == pytest.approx(0.8666667)
    with pytest.raises(ValueError, match="one baseline and one augmented"):
        augment.gains([0.8], [0.8, 0.9])


def test_labelled_subset_has_k_distinct_images_of_every_class_and_no_others():
    train = digits_splits()["train"]
    sub = augment.labelled_subset(train, 10, torch.Generator().manual_seed(3))
    assert sub.x.shape == (100, 1, 8, 8)
    assert torch.equal(sub.y, torch.arange(10).repeat_interleave(10))
    assert len({tuple(img.flatten().tolist()) for img in sub.x}) >= 99  # distinct picks
    # every picked image is a training image of the label it carries
    for img, label in zip(sub.x[::7], sub.y[::7], strict=True):
        matches = (train.x == img).flatten(1).all(1)
        assert matches.any() and (train.y[matches] == label).all()
    other = augment.labelled_subset(train, 10, torch.Generator().manual_seed(4))
    assert not torch.equal(sub.x, other.x)  # the draw follows the seed
    with pytest.raises(ValueError, match="fewer than"):
        augment.labelled_subset(train, 1000, torch.Generator().manual_seed(0))


def test_synthetic_set_is_class_balanced_in_range_and_seeded():
    g_net = Generator(latent_dim=8, width=8).eval()
    syn = augment.synthetic_set(g_net, 7, torch.Generator().manual_seed(0))
    assert syn.x.shape == (70, 1, 8, 8) and syn.x.min() >= 0 and syn.x.max() <= 1
    assert torch.bincount(syn.y, minlength=10).tolist() == [7] * 10
    again = augment.synthetic_set(g_net, 7, torch.Generator().manual_seed(0))
    assert torch.equal(syn.x, again.x)
    grid = augment.first_per_class(syn, 7, shown=3)
    assert torch.equal(grid[3:6], syn.x[7:10])  # row 1 of the grid holds class 1


def test_diff_augment_shifts_by_at_most_one_pixel_cuts_out_and_passes_gradients():
    x = torch.rand(16, 1, 8, 8, requires_grad=True)
    out = augment.diff_augment(2 * x - 1, torch.Generator().manual_seed(0))
    assert out.shape == (16, 1, 8, 8)
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # each output pixel is the fill value or some input pixel at most one step away
    img = torch.arange(64.0).view(1, 1, 8, 8).repeat(4, 1, 1, 1)
    aug = augment.diff_augment(img, torch.Generator().manual_seed(1))
    for b in range(4):
        for i in range(8):
            for j in range(8):
                v = aug[b, 0, i, j].item()
                if v != -1.0:
                    r, c = divmod(int(v), 8)
                    assert abs(r - i) <= 1 and abs(c - j) <= 1
        assert (aug[b] == -1.0).sum() >= 4  # a 3x3 cutout, clipped at the border at worst


def test_mode_seeking_loss_is_the_inverse_distance_ratio():
    fake = torch.cat([torch.zeros(2, 1, 8, 8), torch.full((2, 1, 8, 8), 0.5)])
    z = torch.cat([torch.zeros(2, 4), torch.ones(2, 4)])
    # image distance 0.5, z distance 1: ratio 0.5, loss 1 / 0.5
    assert augment.mode_seeking_loss(fake, z).item() == pytest.approx(2.0, rel=1e-4)


def test_mixed_loss_smooths_the_synthetic_rows_only():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0], [0.0, 0.0, 3.0]])
    y = torch.tensor([0, 1, 2])
    logp = torch.log_softmax(logits, 1)
    eps = 0.3
    # row 0 real: hard target; rows 1, 2 synthetic: (1 - eps) on the label + eps / 3 on each class
    expected = -(logp[0, 0]
                 + (1 - eps) * logp[1, 1] + eps / 3 * logp[1].sum()
                 + (1 - eps) * logp[2, 2] + eps / 3 * logp[2].sum()) / 3
    assert augment.mixed_loss(logits, y, 1, eps).item() == pytest.approx(expected.item(), rel=1e-6)
    # an all-real batch, or no smoothing, is the plain cross-entropy
    plain = torch.nn.functional.cross_entropy(logits, y)
    assert augment.mixed_loss(logits, y, 3, eps).item() == pytest.approx(plain.item(), rel=1e-6)
    assert augment.mixed_loss(logits, y, 1, 0.0).item() == pytest.approx(plain.item(), rel=1e-6)


def _tiny_cfg(**kw):
    return augment.AugmentConfig(classifier_steps=120, classifier_batch=32, **kw)


def test_classifier_learns_from_100_images_and_is_deterministic():
    splits = digits_splits()
    sub = augment.labelled_subset(splits["train"], 10, torch.Generator().manual_seed(0))
    cfg = _tiny_cfg()
    a = augment.train_classifier(sub, None, cfg, seed=5)
    b = augment.train_classifier(sub, None, cfg, seed=5)
    for (name, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(p, q), name
    assert augment.accuracy(a, splits["test"]) > 0.6  # chance is 0.1


def test_synthetic_batches_change_training_and_a_useless_synthetic_set_hurts():
    splits = digits_splits()
    sub = augment.labelled_subset(splits["train"], 10, torch.Generator().manual_seed(0))
    cfg = _tiny_cfg(synthetic_share=0.75)
    noise = DigitsSplit(torch.rand(200, 1, 8, 8), torch.arange(10).repeat_interleave(20))
    clean = augment.accuracy(augment.train_classifier(sub, None, cfg, seed=5), splits["test"])
    noisy = augment.accuracy(augment.train_classifier(sub, noise, cfg, seed=5), splits["test"])
    assert noisy < clean  # labelled noise is no augmentation: the comparison can fail


def test_quick_recipe_clears_its_bar_and_the_saved_generator_reproduces_its_samples(tmp_path):
    result = run_recipe("generative.augment", quick=True, out=tmp_path, quiet=True, track=False)
    m = result.metrics
    assert result.passed
    assert m["gain_points_mean"] == pytest.approx(
        sum(m[f"gain_points_seed{i}"] for i in range(3)) / 3)
    for i in range(3):
        assert m[f"gain_points_seed{i}"] == pytest.approx(
            100 * (m[f"accuracy_augmented_seed{i}"] - m[f"accuracy_baseline_seed{i}"]))
    for name in ("labelled_set.png", "synthetic.png", "accuracy.png"):
        assert (tmp_path / "figures" / name).is_file()
    g_net = load_model(tmp_path)
    cfg = augment.AugmentConfig.load(tmp_path / "config.json")
    syn = augment.synthetic_set(g_net, cfg.synthetic_per_class, torch.Generator().manual_seed(cfg.seed))
    agreement = float((torch.from_numpy(features_and_labels(syn.x)[1]) == syn.y).float().mean())
    assert agreement == pytest.approx(m["synthetic_label_agreement"])
