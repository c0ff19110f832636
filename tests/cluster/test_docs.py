"""cluster/README.md and each script's header document every setting the host scripts read."""

from __future__ import annotations

import re

import pytest

from tests.cluster.helpers import HOSTS, REPO


def names(text: str) -> set[str]:
    return set(re.findall(r"ETL_[A-Z_]+", text))


@pytest.mark.parametrize("script", ["scheduler.sh", "worker.sh", "make-certs.sh"])
def test_every_setting_a_script_reads_is_documented(script):
    text = (HOSTS / script).read_text()
    code = text + ((HOSTS / "_tls.sh").read_text() if "_tls.sh" in text else "")
    read = set(re.findall(r"\$\{(ETL_[A-Z_]+)", code))
    header = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
    assert read, script
    assert read - names(header) == set(), f"the header of {script} does not document these"
    assert read - names((REPO / "cluster" / "README.md").read_text()) == set(), "cluster/README.md does not"
