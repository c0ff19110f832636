"""Dask frame helpers: the bridge between Dask dataframes and the rest of ``etl``."""
