"""Step 1 CNNs, detection and segmentation; step 5 OpenCV work."""

from aiforge.vision import cnn_digits  # noqa: F401  (registers recipes)
