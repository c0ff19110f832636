"""Staged files and the exactly-once Delta commit."""
