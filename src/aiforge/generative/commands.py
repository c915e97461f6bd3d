"""`aiforge sample`: a grid of images from a trained generative run.

Imports nothing heavy at module level (torch and the recipes load inside the command), so
that `aiforge --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from aiforge.core.errors import InputError

SAMPLEABLE = ("generative.vae", "generative.dcgan", "generative.ddpm", "generative.stylegan")
MAX_SAMPLES = 2000


def write_samples(recipe: str, run: Path, *, n: int = 100, label: int | None = None, seed: int = 0,
                  out: Path = Path("samples.png"), steps: int | None = None,
                  sampler: Literal["ddim", "ddpm"] = "ddim", guidance: float | None = None,
                  truncation: float | None = None) -> Path:
    """Sample `n` images from the model saved in `run` and write them as a PNG grid."""
    if recipe not in SAMPLEABLE:
        raise InputError(f"cannot sample {recipe!r}; sampleable recipes: {', '.join(SAMPLEABLE)}")
    if not 1 <= n <= MAX_SAMPLES:
        raise InputError(f"--n must lie in 1..{MAX_SAMPLES}, got {n}")
    if out.suffix.lower() != ".png":
        raise InputError(f"--out must name a .png file, got {out}")
    if recipe != "generative.ddpm" and (steps is not None or guidance is not None or sampler != "ddim"):
        raise InputError(f"{recipe} has no sampler: --steps, --sampler and --guidance are for "
                         "generative.ddpm")
    if truncation is not None and recipe != "generative.stylegan":
        raise InputError("--truncation is for generative.stylegan (the truncation psi of w)")
    if truncation is not None and not 0 <= truncation <= 1:
        raise InputError(f"--truncation must lie in 0..1, got {truncation}")

    import torch

    from aiforge.core.loading import load_model, load_model_config
    from aiforge.generative.data import save_grid

    meta = load_model_config(run)
    if meta["recipe"] != recipe:
        raise InputError(f"{run} is a run of {meta['recipe']!r}, not {recipe!r}")
    config: dict[str, object] = meta["config"]  # type: ignore[assignment]
    classes = int(config.get("num_classes") or 10)  # type: ignore[call-overload]
    if label is not None and not 0 <= label < classes:
        raise InputError(f"--class must lie in 0..{classes - 1} (the run's classes), got {label}")
    model = load_model(run)
    generator = torch.Generator().manual_seed(seed)
    if recipe == "generative.vae":
        if label is not None:
            raise InputError("generative.vae is unconditional; drop --class")
        from aiforge.generative.vae import generate as vae_generate

        images = vae_generate(model, n, generator)  # type: ignore[arg-type]
        title = "generative.vae"
    elif recipe == "generative.dcgan":
        from aiforge.generative.dcgan import generate as gan_generate

        conditional = bool(config["conditional"])
        if label is not None and not conditional:
            raise InputError("this generative.dcgan run is unconditional; drop --class")
        labels = (torch.arange(n) % classes if label is None else torch.full((n,), label)) if conditional else None
        images = gan_generate(model, n, labels=labels, generator=generator)  # type: ignore[arg-type]
        title = "generative.dcgan" + (f", class {label}" if label is not None else "")
    elif recipe == "generative.stylegan":
        from aiforge.generative.stylegan import generate as style_generate

        psi = 1.0 if truncation is None else truncation
        labels = torch.arange(n) % 10 if label is None else torch.full((n,), label)
        images = style_generate(model, labels, generator=generator, psi=psi)  # type: ignore[arg-type]
        title = f"generative.stylegan, psi {psi:g}" + (f", class {label}" if label is not None else "")
    else:
        from aiforge.generative.ddpm import DDPMConfig, balanced_labels, generate
        from aiforge.generative.diffusion import make_schedule

        cfg = DDPMConfig.from_dict(config)
        schedule = make_schedule(cfg.noise_schedule, cfg.timesteps)
        k = cfg.sample_steps if steps is None else steps
        if sampler == "ddim" and not 1 <= k <= cfg.timesteps:
            raise InputError(f"--steps must lie in 1..{cfg.timesteps} (the run's timesteps), got {k}")
        # labels cycle 0..k-1, so with 10 classes each column of the 10-wide grid is one class
        labels = balanced_labels(n, classes) if label is None else torch.full((n,), label)
        s = cfg.guidance if guidance is None else guidance
        images = generate(model, schedule, n, labels=labels, generator=generator,  # type: ignore[arg-type]
                          sampler=sampler, steps=k, guidance=s, eta=cfg.eta, size=cfg.size)
        what = f"{sampler.upper()} {k if sampler == 'ddim' else cfg.timesteps} steps"
        title = f"generative.ddpm, {what}, guidance {s:g}" + (f", class {label}" if label is not None else "")
    out.parent.mkdir(parents=True, exist_ok=True)
    return save_grid(images, out, min(10, n), title)


def register_commands(app: typer.Typer) -> None:
    @app.command()
    def sample(
        recipe: Annotated[str, typer.Argument(help=", ".join(SAMPLEABLE))],
        run: Annotated[Path, typer.Option("--run", help="Run folder (or its model/ folder).")],
        n: Annotated[int, typer.Option("--n", help="Number of images.")] = 100,
        label: Annotated[int | None, typer.Option("--class", help="Class to generate (conditional runs).")] = None,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the sampling noise.")] = 0,
        out: Annotated[Path, typer.Option("--out", help="PNG file to write.")] = Path("samples.png"),
        steps: Annotated[int | None, typer.Option("--steps", help="DDIM steps (DDPM runs).")] = None,
        sampler: Annotated[str, typer.Option("--sampler", help="ddim or ddpm (ancestral).")] = "ddim",
        guidance: Annotated[float | None, typer.Option("--guidance", help="Guidance scale (DDPM).")] = None,
        truncation: Annotated[float | None, typer.Option(
            "--truncation", help="Truncation psi in 0..1 (StyleGAN; 1 = none).")] = None,
    ) -> None:
        """Write a grid of generated images from a trained generative run."""
        try:
            if sampler not in ("ddim", "ddpm"):
                raise InputError(f"--sampler must be ddim or ddpm, got {sampler!r}")
            path = write_samples(recipe, run, n=n, label=label, seed=seed, out=out, steps=steps,
                                 sampler=sampler, guidance=guidance,  # type: ignore[arg-type]
                                 truncation=truncation)
        except InputError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(2) from None
        typer.echo(str(path))
