"""Every area that registers recipes. Importing this module registers them all; the core
registry imports it by name, so core itself depends on no area.

Each area package's `__init__` imports its own recipe modules (and keeps heavy libraries
such as transformers out of module level, so that `aiforge list` stays fast).
"""

import importlib

AREAS = ("vision", "sequence", "rl", "generative", "mlops", "health", "projects")

for _area in AREAS:
    importlib.import_module(f"aiforge.{_area}")
