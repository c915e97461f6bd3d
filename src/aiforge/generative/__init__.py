"""Step 3: generative models."""

from aiforge.generative import dcgan, ddpm, vae  # noqa: F401  (registers recipes)
