"""Step 3: generative models."""

from aiforge.generative import augment, dcgan, ddpm, stylegan, vae  # noqa: F401  (registers recipes)
