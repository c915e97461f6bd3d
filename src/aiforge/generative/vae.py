"""Step 3, generative models: a convolutional variational autoencoder (Kingma & Welling, 2014).

An encoder q(z|x) = N(mu(x), diag sigma^2(x)) and a decoder p(x|z) = N(m(z), diag s^2(z))
with a standard normal prior p(z) are trained together by maximising the evidence lower
bound (ELBO, eq. 3 of the paper):

    log p(x) >= E_q[log p(x|z)] - KL(q(z|x) || p(z))

with one reparameterised sample z = mu + sigma * eps per image (section 2.4). The
Gaussian KL has the closed form of the paper's appendix B:

    KL = 1/2 sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2)

The decoder predicts a variance per pixel as well as a mean: with a fixed variance the
"likelihood" is a scaled squared error and the ELBO is not a bound in nats one can compare.

Likelihoods are of dequantised images (see `generative.data`) and reported in nats per image
on the grey-level scale: -log p(x) + 64 log 17 bounds -log P(k) for the 17-level image k. The
bar compares the test negative ELBO with the exact test log-likelihood of probabilistic PCA
(Tipping & Bishop, 1999) with the same latent size, fitted by scikit-learn on the same
dequantised images and put on the same scale.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from pydantic import Field
from sklearn.decomposition import PCA, FactorAnalysis
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from aiforge.core import Bar, Recipe, RunContext, SupervisedConfig, fit, register
from aiforge.core.plots import learning_curves, plt
from aiforge.data.digits import digits_splits
from aiforge.generative.data import LEVELS, dequantize, dequantized_test, save_grid
from aiforge.generative.evaluation import score_samples

PIXELS = 64
NATS_OFFSET = PIXELS * math.log(LEVELS)  # [0, 1] density -> grey-level scale


class VAEConfig(SupervisedConfig):
    epochs: int = Field(120, ge=1)
    """Number of passes over the training set."""
    batch_size: int = Field(64, ge=1)
    """Images per optimisation step."""
    lr: float = Field(2e-3, gt=0, le=10)
    """Peak learning rate."""
    latent_dim: int = Field(8, ge=1, le=64)
    """Size of z; probabilistic PCA gets the same number of components."""
    width: int = Field(32, ge=4, le=256)
    """Channels of the first conv layer; doubled at each downsampling."""
    min_log_var: float = Field(-9.0, le=0)
    """Floor on the decoder's per-pixel log-variance, for numerical stability."""
    eval_samples: int = Field(10, ge=1)
    """z samples per test image for the negative ELBO and the importance-weighted bound."""
    n_generate: int = Field(890, ge=178)
    """Images generated for digits-FD and class coverage (5 chunks of the reference size)."""


# --- the model -----------------------------------------------------------------------------

class ConvVAE(nn.Module):
    def __init__(self, latent_dim: int = 8, width: int = 32, min_log_var: float = -9.0) -> None:
        super().__init__()
        w = width
        self.latent_dim, self.min_log_var = latent_dim, min_log_var
        self.encoder = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1), nn.SiLU(),
            nn.Conv2d(w, 2 * w, 4, stride=2, padding=1), nn.SiLU(),         # 8 -> 4
            nn.Conv2d(2 * w, 4 * w, 4, stride=2, padding=1), nn.SiLU(),     # 4 -> 2
            nn.Flatten(), nn.Linear(4 * w * 4, 2 * latent_dim),
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, 4 * w * 4), nn.SiLU(), nn.Unflatten(1, (4 * w, 2, 2)),
            nn.ConvTranspose2d(4 * w, 2 * w, 4, stride=2, padding=1), nn.SiLU(),  # 2 -> 4
            nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1), nn.SiLU(),      # 4 -> 8
            nn.Conv2d(w, 2, 3, padding=1),              # mean logit and log-variance per pixel
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_var = self.encoder(x).chunk(2, dim=1)   # (B, d), (B, d)
        return mu, log_var

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.decoder(z)                           # (B, 2, 8, 8)
        mean = torch.sigmoid(out[:, :1])                # (B, 1, 8, 8) in (0, 1)
        log_var = out[:, 1:].clamp(min=self.min_log_var)
        return mean, log_var

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction (decoder mean at the posterior mean)."""
        return self.decode(self.encode(x)[0])[0]


def build_model(cfg: VAEConfig) -> ConvVAE:
    return ConvVAE(cfg.latent_dim, cfg.width, cfg.min_log_var)


# --- the ELBO --------------------------------------------------------------------------------

def gaussian_log_density(x: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, exp(log_var)) summed over every axis but the first: (B, ...) -> (B,)."""
    per_dim = -0.5 * (math.log(2 * math.pi) + log_var + (x - mean) ** 2 / log_var.exp())
    return per_dim.flatten(1).sum(1)


def kl_to_standard_normal(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag exp(log_var)) || N(0, I)), closed form (Kingma & Welling, appendix B): (B,)."""
    return 0.5 * (mu**2 + log_var.exp() - 1.0 - log_var).sum(1)


def elbo_terms(model: ConvVAE, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(reconstruction log-likelihood (B,), KL (B,)) with one reparameterised z per image."""
    mu, log_var = model.encode(x)
    z = mu + (0.5 * log_var).exp() * torch.randn_like(mu)   # (B, d) reparameterisation trick
    mean, dec_log_var = model.decode(z)
    return gaussian_log_density(x, mean, dec_log_var), kl_to_standard_normal(mu, log_var)


def negative_elbo(model: ConvVAE, x: torch.Tensor) -> torch.Tensor:
    """Per-image negative ELBO in nats on the grey-level scale: (B,)."""
    log_px, kl = elbo_terms(model, x)
    return kl - log_px + NATS_OFFSET


@torch.no_grad()
def importance_weighted_nll(model: ConvVAE, x: torch.Tensor, k: int) -> torch.Tensor:
    """-log (1/k sum_i p(x, z_i) / q(z_i|x)), a tighter bound than the ELBO (Burda et al., 2016,
    eq. 8); same scale as `negative_elbo`: (B,)."""
    mu, log_var = model.encode(x)
    log_w = []
    for _ in range(k):
        z = mu + (0.5 * log_var).exp() * torch.randn_like(mu)
        mean, dec_log_var = model.decode(z)
        zeros = torch.zeros_like(z)
        log_w.append(gaussian_log_density(x, mean, dec_log_var) + gaussian_log_density(z, zeros, zeros)
                     - gaussian_log_density(z, mu, log_var))
    log_px = torch.logsumexp(torch.stack(log_w), 0) - math.log(k)    # (B,)
    return NATS_OFFSET - log_px


@torch.no_grad()
def mean_negative_elbo(model: ConvVAE, x: torch.Tensor, samples: int) -> float:
    return float(torch.stack([negative_elbo(model, x) for _ in range(samples)]).mean())


# --- linear references and generation ---------------------------------------------------------

def linear_references(train_x: torch.Tensor, test_x: torch.Tensor, latent_dim: int) -> dict[str, float]:
    """Exact test NLL (nats per image, grey-level scale) of probabilistic PCA and of factor
    analysis with `latent_dim` factors; `score` is sklearn's mean log-likelihood."""
    tr, te = train_x.flatten(1).double().numpy(), test_x.flatten(1).double().numpy()
    ppca = PCA(latent_dim).fit(tr)
    fa = FactorAnalysis(latent_dim, random_state=0).fit(tr)
    return {"ppca_test_nll": NATS_OFFSET - float(ppca.score(te)),
            "fa_test_nll": NATS_OFFSET - float(fa.score(te))}


@torch.no_grad()
def generate(model: ConvVAE, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """n images (decoder means of z ~ N(0, I)): (n, 1, 8, 8) in [0, 1]."""
    z = torch.randn(n, model.latent_dim, generator=generator)
    return model.decode(z)[0]


# --- figures ---------------------------------------------------------------------------------

@torch.no_grad()
def latent_traversal(model: ConvVAE, x: torch.Tensor, steps: int = 9) -> torch.Tensor:
    """Decode the posterior mean of one image with each latent moved over [-3, 3]: (d*steps, 1, 8, 8)."""
    mu = model.encode(x[:1])[0]                         # (1, d)
    values = torch.linspace(-3, 3, steps)
    z = mu.repeat(model.latent_dim * steps, 1)          # (d*steps, d)
    for j in range(model.latent_dim):
        z[j * steps:(j + 1) * steps, j] = values
    return model.decode(z)[0]


@torch.no_grad()
def latent_map(model: ConvVAE, x: torch.Tensor, y: torch.Tensor, path: Path) -> None:
    """Test posterior means projected on their first two principal axes, coloured by class."""
    mu = model.encode(x)[0].numpy()
    xy = PCA(2).fit_transform(mu) if mu.shape[1] > 2 else mu
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    points = ax.scatter(xy[:, 0], xy[:, 1], c=y.numpy(), cmap="tab10", s=9)
    fig.colorbar(points, ax=ax, ticks=range(10), label="digit")
    ax.set(title="VAE latent space (test posterior means, 2 principal axes)", xlabel="PC 1", ylabel="PC 2")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- the recipe ------------------------------------------------------------------------------

def train(cfg: VAEConfig, ctx: RunContext) -> dict[str, float]:
    splits = digits_splits()
    loader = DataLoader(TensorDataset(splits["train"].x), batch_size=cfg.batch_size, shuffle=True)
    val_x = dequantize(splits["val"].x, torch.Generator().manual_seed(1))
    test_x = dequantized_test(splits["test"])
    model = build_model(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def loss_fn(model: nn.Module, batch: list[torch.Tensor]) -> torch.Tensor:
        return negative_elbo(model, dequantize(batch[0])).mean()  # fresh noise u every epoch

    def evaluate(model: nn.Module) -> dict[str, float]:
        return {"val_nelbo": mean_negative_elbo(model, val_x, 1)}

    result = fit(model, loader, loss_fn=loss_fn, evaluate=evaluate, cfg=cfg, ctx=ctx,
                 optimizer=optimizer, monitor="val_nelbo", mode="min")
    model.eval()
    ctx.save_model(model)

    train_x = dequantize(splits["train"].x, torch.Generator().manual_seed(0))
    refs = linear_references(train_x, test_x, cfg.latent_dim)
    generator = torch.Generator().manual_seed(cfg.seed)
    test_nelbo = mean_negative_elbo(model, test_x, cfg.eval_samples)
    metrics = {
        "test_nelbo": test_nelbo,
        "test_nll_iw": float(importance_weighted_nll(model, test_x, 10 * cfg.eval_samples).mean()),
        **refs,
        "nelbo_minus_ppca": test_nelbo - refs["ppca_test_nll"],
        **score_samples(generate(model, cfg.n_generate, generator)),
        "best_epoch": float(result.best_epoch),
    }

    learning_curves(result.history, ctx.figure_path("learning_curves.png"), "generative.vae")
    save_grid(torch.cat([splits["test"].x[:20], model(test_x[:20])]),
              ctx.figure_path("reconstructions.png"), 10, "test images (rows 1-2), reconstructions (3-4)")
    save_grid(generate(model, 100, generator), ctx.figure_path("samples.png"), 10, "VAE samples")
    save_grid(latent_traversal(model, test_x), ctx.figure_path("latent_traversal.png"), 9,
              "one latent per row, moved over [-3, 3]")
    latent_map(model, test_x, splits["test"].y, ctx.figure_path("latent_map.png"))
    return metrics


RECIPE = register(Recipe(
    name="generative.vae",
    step="3",
    topic="VAE",
    summary="A convolutional VAE on the 8x8 digits; test negative ELBO against probabilistic PCA.",
    config=VAEConfig,
    train=train,
    bar=Bar("nelbo_minus_ppca", "<", 0.0),
    quick_bar=Bar("test_nelbo", "<", 150.0),
    budget_s=300,
    quick={"epochs": 25},
    build_model=build_model,
))
