"""Datasets: shipped with a dependency, generated here, or read from a user's path."""
