"""Observability: logs, figures and progress."""
