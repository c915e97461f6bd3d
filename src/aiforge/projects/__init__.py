"""The four final projects, built from the areas."""
