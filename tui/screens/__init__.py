"""Screens: the run picker and the modal detail, seed and help screens."""
