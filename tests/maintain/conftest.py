"""A small lineitem table made by two real runs, copied fresh for each test, and the CLI with our commands."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

import etl

PIPELINES = Path(__file__).resolve().parents[2] / "pipelines"
DAYS = ("2026-01-01", "2026-01-02")
PARAMS = {"demo_orders": 300}


@dataclass(frozen=True)
class Lineitem:
    warehouse: str
    url: str
    runs: tuple  # the RunResults of the runs that made versions 1 and 2


@pytest.fixture(scope="session")
def lineitem_template(client, tmp_path_factory):
    """Version 0 (create), 1 (initial extract), 2 (a day of changes: files rewritten, so files removed)."""
    warehouse = tmp_path_factory.mktemp("maintain") / "warehouse"
    pipe = etl.load_pipeline("tpch_lineitem_daily", paths=[str(PIPELINES)])
    runs = tuple(etl.run(pipe, date=d, warehouse=str(warehouse), client=client, params=PARAMS) for d in DAYS)
    assert [r.status for r in runs] == ["committed", "committed"] and runs[1].files_removed > 0
    return warehouse, runs


@pytest.fixture
def lineitem(lineitem_template, tmp_path) -> Lineitem:
    """A private copy of the template warehouse (file times kept)."""
    template, runs = lineitem_template
    warehouse = tmp_path / "warehouse"
    shutil.copytree(template, warehouse)
    return Lineitem(str(warehouse), str(warehouse / "lineitem"), runs)


@pytest.fixture(scope="session")
def etl_cli():
    """Invoke ``etl`` (the real group, so errors map to exit codes) with the maintenance commands."""
    from etl.cli import cli
    from etl.commands.maintenance import COMMANDS

    for command in COMMANDS:
        if command.name not in cli.commands:
            cli.add_command(command)

    def invoke(*args: str):
        return CliRunner().invoke(cli, list(args))

    return invoke
