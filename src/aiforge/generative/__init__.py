"""Step 3: generative models."""

from aiforge.generative import augment, cyclegan, dcgan, ddpm, stylegan, vae  # noqa: F401  (registers recipes)
