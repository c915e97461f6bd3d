"""CycleGAN: losses against hand values (LSGAN, CyCADA's semantic loss), the image pool, the
schedule, exact batching, the patch receptive field, learning, resume to the same weights, the
quick bar, translate_images; the target-side classifier f_T's pieces (Sinkhorn balancing,
cluster means, blur, shape augmentation; f_T's accuracy in the quick run)."""

import json
import math
import shutil

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from aiforge.core import InputError, RunContext, load_model, run_recipe
from aiforge.core.seeding import seed_everything
from aiforge.data.digits import digits_splits
from aiforge.generative import cyclegan
from aiforge.generative.cyclegan import (
    CycleGANConfig,
    Generator,
    ImagePool,
    PatchDiscriminator,
    lr_factor,
    lsgan_d_loss,
    lsgan_g_loss,
    semantic_loss,
    translate_images,
)
from aiforge.generative.cyclegan_adapt import (
    cluster_mean,
    gaussian_blur,
    match_ink,
    pixel_clusters,
    pseudo_labels,
    shape_augment,
    sinkhorn_balance,
    train_classifier,
)
from aiforge.generative.cyclegan_eval import train_printed_classifier


def test_least_squares_losses_match_hand_values():
    ones, zeros, halves = torch.ones(2, 1, 4, 4), torch.zeros(2, 1, 4, 4), torch.full((2, 1, 4, 4), 0.5)
    assert lsgan_d_loss(ones, zeros).item() == 0.0                     # a perfect discriminator
    assert lsgan_d_loss(zeros, ones).item() == pytest.approx(1.0)       # 0.5 * (1 + 1)
    assert lsgan_d_loss(halves, halves).item() == pytest.approx(0.25)   # 0.5 * (0.25 + 0.25)
    assert lsgan_g_loss(ones).item() == 0.0 and lsgan_g_loss(halves).item() == pytest.approx(0.25)


def test_semantic_loss_matches_a_hand_computed_case():
    # f_S: logits (1 - 2 m, 0) with m the mean pixel read in [0, 1]
    clf = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
    with torch.no_grad():
        clf[1].weight.zero_()
        clf[1].weight[0].fill_(-2 / 64)
        clf[1].bias.copy_(torch.tensor([1.0, 0.0]))
    source = torch.full((2, 1, 8, 8), -1.0)                  # black in [-1, 1]: m = 0, reads class 0
    translated = torch.full((2, 1, 8, 8), 1.0, requires_grad=True)   # white: m = 1, logits (-1, 0)
    loss = semantic_loss(clf, source, translated)
    assert loss.item() == pytest.approx(math.log(1 + math.e))   # -log(e^-1 / (e^-1 + e^0))
    loss.backward()
    assert translated.grad is not None and translated.grad.abs().sum() > 0
    # a translation that keeps the reading costs less than one that flips it
    assert semantic_loss(clf, source, source).item() == pytest.approx(math.log(1 + math.exp(-1)))
    # the source's reading may come from another classifier (f_S labels a, f_T reads G(a))
    reader = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
    with torch.no_grad():
        reader[1].weight.zero_()
        reader[1].bias.copy_(torch.tensor([0.0, 1.0]))                # always reads class 1
    assert semantic_loss(clf, source, source, reader=reader).item() == pytest.approx(math.log(1 + math.e))
    with pytest.raises(ValueError, match="source classifier"):
        cyclegan.fit_cyclegan(CycleGANConfig(steps=1, semantic_weight=1.0), None, torch.zeros(1, 1, 8, 8),
                              torch.zeros(1, 1, 8, 8))


def test_image_pool_fills_then_swaps_half_the_time():
    torch.manual_seed(0)
    assert torch.equal(ImagePool(0).query(x := torch.randn(5, 1, 8, 8)), x)   # size 0: pass-through
    pool = ImagePool(4)
    first = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 1, 8, 8)
    assert torch.equal(pool.query(first), first)                            # filling: returned as is
    new = torch.full((200, 1, 8, 8), 9.0)
    out = pool.query(new)
    from_pool = (out[:, 0, 0, 0] != 9).sum().item()
    assert from_pool == 4, "each stored image is handed out once, then replaced by a new one"
    assert len(pool.images) == 4 and pool.state().shape == (4, 1, 8, 8)
    assert ImagePool(4, pool.state()).images[0].shape == (1, 8, 8)


def test_learning_rate_is_constant_then_decays_linearly_to_zero():
    assert [lr_factor(s, 100, 0.5) for s in (0, 49, 50, 75, 100)] == [1.0, 1.0, 1.0, 0.5, 0.0]
    assert lr_factor(0, 10, 0.0) == 1.0 and lr_factor(5, 10, 0.0) == 0.5


@pytest.mark.parametrize("downsample", [True, False])
def test_instance_norm_makes_stacked_calls_exact(downsample):
    g = Generator(width=8, res_blocks=2, downsample=downsample)
    a, b = torch.randn(3, 1, 8, 8), torch.randn(5, 1, 8, 8)
    both = g(torch.cat([a, b]))
    assert both.shape == (8, 1, 8, 8) and both.abs().max() <= 1
    assert torch.allclose(both, torch.cat([g(a), g(b)]), atol=1e-6)


def test_patch_discriminator_scores_overlapping_patches():
    d = PatchDiscriminator(width=8)
    assert d(torch.randn(2, 1, 8, 8)).shape == (2, 1, 4, 4)
    # the convolutions' window; instance norm's per-image statistics are global, so take it out
    d.net = nn.Sequential(*[m for m in d.net if not isinstance(m, nn.InstanceNorm2d)])
    x = torch.randn(1, 1, 8, 8, requires_grad=True)
    d(x)[0, 0, 0, 0].backward()
    rows, cols = (x.grad[0, 0] != 0).nonzero(as_tuple=True)
    assert rows.max() < 7 and cols.max() < 7, "the corner patch does not see the far corner"
    assert rows.max() - rows.min() + 1 <= PatchDiscriminator.RECEPTIVE_FIELD


def _fit(cfg, out, resume=False, target=False):
    seed_everything(cfg.seed, 1)
    ctx = RunContext(recipe="generative.cyclegan", out=out, config=cfg, quiet=True, resume=resume)
    printed, labels = cyclegan.printed_domain(200, cyclegan.PRINTED_TRAIN_SEED)
    f_s = train_printed_classifier(printed, labels, cyclegan.SEMANTIC_CLASSIFIER_SEED)
    f_t = refresh = None
    if target:   # a cheap stand-in for TargetSide: f_T from one step on 64 translations
        f_t = train_classifier(0, 1, pseudo=(printed[:64], labels[:64]))
        refresh = lambda pair: train_classifier(1, 1, pseudo=(      # noqa: E731
            cyclegan.translate(pair, printed[:64], "printed_to_handwritten"), labels[:64]))
    return cyclegan.fit_cyclegan(cfg, ctx, printed, digits_splits()["train"].x[:200], f_s, f_t, refresh)


@pytest.mark.parametrize("target", [False, True])
def test_cycle_loss_falls_and_resuming_gives_the_same_generators(tmp_path, target):
    # the paper's loss weights, so that 200 steps of a tiny model show the cycle loss falling
    cfg = CycleGANConfig(steps=200, checkpoint_every=100, width=8, res_blocks=1, disc_width=8,
                         batch_size=8, pool_size=10, lambda_cycle=10.0, lambda_identity=0.5,
                         semantic_weight=1.0, adapt_refresh_at=0.25)
    straight, history = _fit(cfg, tmp_path / "a", target=target)
    assert history[-1]["cycle"] < 0.6 * history[0]["cycle"], history
    assert all(row["semantic"] > 0 for row in history)             # the semantic term is on
    shutil.copytree(tmp_path / "a" / "checkpoints" / "step-000100",
                    tmp_path / "b" / "checkpoints" / "step-000100")
    # resumed at 100: f_T comes from the checkpoint (refreshed at step 50), not from scratch
    resumed, history_b = _fit(cfg, tmp_path / "b", resume=True, target=target)
    assert history_b == history
    for (name, p), (_, q) in zip(straight.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(p, q), name


def test_refresh_needs_a_first_target_classifier():
    with pytest.raises(ValueError, match="target classifier"):
        cyclegan.fit_cyclegan(CycleGANConfig(steps=1), None, torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8),
                              nn.Identity(), None, lambda pair: nn.Identity())


def test_quick_cyclegan_clears_its_bar_and_translates_after_reload(tmp_path):
    result = run_recipe("generative.cyclegan", quick=True, out=tmp_path, quiet=True, track=False)
    m = result.metrics
    assert result.passed, m
    # the semantic loss read by the adapted f_T redraws shapes even in 600 steps (read by f_S
    # instead, a 400-step quick run kept 0.601 against 0.582 untranslated)
    assert m["identity_kept_p2h"] > m["identity_untranslated_p2h"] + 0.05
    # f_T and its pseudo-labels, made without a handwritten label, beat chance (0.1) by far
    assert m["target_classifier_accuracy"] > 0.35 and m["pseudo_label_accuracy_first"] > 0.35
    assert m["digits_fd_translated"] < m["digits_fd_printed"]
    assert 0 < m["cycle_l1_printed"] < 0.2 and 0 < m["cycle_l1_handwritten"] < 0.2
    for name in ("printed_to_handwritten.png", "handwritten_to_printed.png", "losses.png"):
        assert f"figures/{name}" in result.artifacts

    pair = load_model(tmp_path)
    x = digits_splits()["test"].x[:6]
    out = translate_images(tmp_path, x, "handwritten_to_printed")
    assert out.shape == (6, 1, 8, 8) and out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, cyclegan.translate(pair, x, "handwritten_to_printed"))
    assert torch.allclose(translate_images(tmp_path, x[:, 0], "handwritten_to_printed"), out, atol=1e-6)

    with pytest.raises(InputError, match="direction"):
        translate_images(tmp_path, x, "sideways")
    with pytest.raises(InputError, match=r"\(N, 1, 8, 8\)"):
        translate_images(tmp_path, torch.zeros(2, 3, 8, 8), "printed_to_handwritten")
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        translate_images(tmp_path, x * 255, "printed_to_handwritten")
    with pytest.raises(InputError, match="no such run"):
        translate_images(tmp_path / "missing", x, "printed_to_handwritten")
    other = tmp_path / "other" / "model"
    other.mkdir(parents=True)
    (other / "aiforge-model.json").write_text(json.dumps({"recipe": "generative.vae", "config": {}}))
    with pytest.raises(InputError, match=r"not 'generative\.cyclegan'"):
        translate_images(tmp_path / "other", x, "printed_to_handwritten")


# --- cyclegan_adapt: the target-side classifier f_T, without a handwritten label ---------------

def test_sinkhorn_balance_gives_each_class_an_equal_share():
    # every row prefers class 0; balanced, the two least sure rows must go to class 1
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4]])
    q = sinkhorn_balance(probs, sharpness=1.0, iters=500)
    assert torch.allclose(q.sum(1), torch.ones(4), atol=1e-5)
    assert torch.allclose(q.sum(0), torch.full((2,), 2.0), atol=1e-3)     # N / C each
    assert q.argmax(1).tolist() == [0, 0, 1, 1]
    assert probs.argmax(1).tolist() == [0, 0, 0, 0]                       # unbalanced argmax


def test_cluster_mean_averages_within_each_cluster():
    probs = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.2, 0.8]])
    out = cluster_mean(probs, torch.tensor([0, 0, 1]))
    assert torch.allclose(out, torch.tensor([[0.5, 0.5], [0.5, 0.5], [0.2, 0.8]]))


def test_pixel_clusters_are_reproducible_runs_of_k_means():
    centres = F.pad(torch.eye(3).repeat_interleave(20, 1), (0, 4))         # three far-apart blobs (3, 64)
    noise = 0.01 * torch.randn(30, 64, generator=torch.Generator().manual_seed(0))
    images = (centres.repeat(10, 1) + noise).view(30, 1, 8, 8)
    runs = pixel_clusters(images, 3, seed=4, runs=2)
    assert runs.shape == (2, 30) and torch.equal(runs, pixel_clusters(images, 3, seed=4, runs=2))
    for clusters in runs:                                                   # each run finds the blobs
        assert all(len(clusters[i::3].unique()) == 1 for i in range(3)) and len(clusters.unique()) == 3


class _FixedLogits(nn.Module):
    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits[: len(x)]


def test_pseudo_labels_let_two_clusterings_outvote_a_straddling_one():
    # 20 images, two of each class, read weakly right (logit 1 on the true class)
    truth = torch.arange(10).repeat_interleave(2)
    net = _FixedLogits(F.one_hot(truth, 10).float())
    images = torch.zeros(20, 1, 8, 8)
    right = truth.clone()                                                   # a cluster per digit
    straddling = right.clone()
    straddling[[1, 2]] = 10                                                 # one cluster over a 0 and a 1
    straddling[3] = 11
    assert torch.equal(pseudo_labels([net], images, right[None]), truth)
    one = pseudo_labels([net], images, torch.stack([straddling]))
    assert not torch.equal(one, truth)                                      # ties: the 0 or the 1 is lost
    assert torch.equal(pseudo_labels([net], images, torch.stack([straddling, right, right])), truth)


def test_gaussian_blur_keeps_constants_and_mass():
    x = torch.full((1, 2, 12, 12), 0.3)
    assert torch.allclose(gaussian_blur(x, 2.0), x, atol=1e-6)             # normalised kernel
    spike = torch.zeros(1, 1, 15, 15)
    spike[0, 0, 7, 7] = 1.0
    out = gaussian_blur(spike, 1.0)
    assert out.sum().item() == pytest.approx(1.0, abs=1e-5) and out[0, 0, 7, 7] < 0.2
    assert torch.allclose(out, out.flip(-1)) and torch.allclose(out, out.transpose(-1, -2))


def test_match_ink_redraws_each_glyph_with_the_ink_asked():
    bitmaps, _ = cyclegan.printed_domain(8, 0, size=32)                    # (8, 1, 32, 32)
    ink = torch.linspace(0.2, 0.4, 8)
    out = match_ink(bitmaps, ink)
    assert (out.mean((1, 2, 3)) - ink).abs().max() < 0.005                 # the ink asked, image by image
    assert ((out > 0.05) & (out < 0.95)).float().mean() < 0.2              # a pen stroke, not a grey wash
    assert (match_ink(bitmaps, ink + 0.1) >= out - 1e-6).all()              # more ink: the same stroke, thicker
    flat = lambda x: (x - x.mean()).flatten()                               # noqa: E731
    for glyph, drawn in zip(bitmaps, out, strict=True):                     # still the glyph's shape
        assert F.cosine_similarity(flat(glyph), flat(drawn), dim=0) > 0.6
    assert match_ink(torch.zeros(2, 1, 32, 32), torch.full((2,), 0.3)).abs().max() == 0   # blank stays blank


def test_shape_augment_reshapes_printed_digits_reproducibly():
    bitmaps, _ = cyclegan.printed_domain(8, 0, size=32)                    # (8, 1, 32, 32)
    ink = torch.tensor([0.25, 0.3, 0.35])
    out = shape_augment(bitmaps, torch.Generator().manual_seed(0), ink)
    assert out.shape == (8, 1, 8, 8) and out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, shape_augment(bitmaps, torch.Generator().manual_seed(0), ink))
    plain = F.avg_pool2d(bitmaps, 4)
    assert (out - plain).abs().mean() > 0.02, "the shapes were not changed"
    drawn = out.mean((1, 2, 3))                                             # each one of the inks offered
    assert (drawn[:, None] - ink).abs().min(1).values.max() < 0.005
    blank = shape_augment(torch.zeros(2, 1, 32, 32), torch.Generator(), ink)
    assert blank.abs().max() == 0


def test_train_classifier_needs_data():
    with pytest.raises(ValueError, match="needs"):
        train_classifier(0, 1)
    with pytest.raises(ValueError, match="inks"):
        train_classifier(0, 1, printed=(torch.zeros(4, 1, 32, 32), torch.zeros(4, dtype=torch.long)))
