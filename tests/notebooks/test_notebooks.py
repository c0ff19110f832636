"""Every notebook in notebooks/ runs headless, top to bottom, in a real Jupyter kernel, without errors."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"

# What each notebook must show besides "no error", as (a line of a cell's source, a pattern that
# cell's outputs must match): a bug that breaks the story breaks one of these.
EXPECTED = {
    "01_getting_started.ipynb": [
        ("plan = etl.plan(", r"touches.*\d+ partition\(s\)"),
        ("etl.preview(", r"l_net_revenue"),
        ("first = etl.run(", r"committed"),  # the first run's RunResult
        ("again = etl.run(", r"rerun of 2026-01-01: skipped \(table stays at version 1\)"),  # exactly once
        ("history = pd.DataFrame(", r"MERGE"),
        ("v1 = DeltaTable(url, version=", r"version 1: [\d,]+ rows; version 3: [\d,]+ rows"),  # time travel
        ("import matplotlib", r"image/png"),  # the plots
        ("shutil.rmtree(warehouse)", r"removed \S+"),
    ],
}


def _outputs(cell) -> str:
    out = []
    for o in cell.get("outputs", []):
        out.append(o.get("text", ""))
        for mime, data in o.get("data", {}).items():
            out.append(mime if mime.startswith("image/") else str(data))
    return "\n".join(out)


def test_every_notebook_has_expectations():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(EXPECTED)


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_notebook_runs_clean(path: Path, monkeypatch):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    # stored without outputs: the repository holds no stale results (nor paths of someone's machine)
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")
    monkeypatch.delenv("ETL_PIPELINES", raising=False)  # the notebook finds pipelines/ from its own folder
    monkeypatch.delenv("ETL_WAREHOUSE", raising=False)

    NotebookClient(nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()

    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, errors
    for marker, pattern in EXPECTED[path.name]:
        (cell,) = [c for c in nb.cells if c.cell_type == "code" and marker in c.source]
        assert re.search(pattern, _outputs(cell)), f"{path.name}: the cell with {marker!r} shows no {pattern!r}"
    warehouse = re.search(r"removed (\S+)", _outputs(nb.cells[-1])).group(1)
    assert not Path(warehouse).exists()  # the notebook leaves nothing behind
