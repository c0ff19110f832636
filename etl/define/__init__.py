"""Declaring pipelines: what a pipeline is. Imports nothing from the runner or the sinks."""
