"""Fixtures of the cluster tests: host processes stopped at teardown, an empty working directory."""

from __future__ import annotations

import pytest

from tests.cluster.helpers import Hosts


@pytest.fixture
def hosts(tmp_path):
    h = Hosts(tmp_path)
    try:
        yield h
    finally:
        h.stop()


@pytest.fixture
def empty_dir(tmp_path):
    """A working directory with nothing in it: no pipelines, no repo."""
    d = tmp_path / "empty"
    d.mkdir()
    return d
