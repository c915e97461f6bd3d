"""Step 3: generative models."""
