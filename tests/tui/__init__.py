"""Tests of esper-tui."""
