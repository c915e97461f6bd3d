"""Step 1 CNNs, detection and segmentation; step 5 OpenCV work."""

from aiforge.vision import (  # noqa: F401
    cnn_digits,
    frcnn,
    maskrcnn,
    transfer,
    yolo,
)
