"""Step 5: healthcare (MONAI)."""
