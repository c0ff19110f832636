"""Demo input for the example pipelines, generated with numpy (no download)."""
