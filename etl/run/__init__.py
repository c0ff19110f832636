"""Running pipelines on a Dask cluster: stage files in parallel, commit once."""
