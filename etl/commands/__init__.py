"""Command groups of the ``etl`` command line, registered in :mod:`etl.cli` with ``cli.add_command``."""
