"""`etl run --cluster NAME` reaches the scheduler named by a profile."""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner

from etl.cli import cli
from tests.core.helpers import oracle, random_batch, table_frame, write_batch

PIPE = '''
import dask.dataframe as dd
from tests.core.helpers import make_pipeline
p = make_pipeline("t_profile")
'''


def test_run_by_cluster_profile_uses_that_scheduler(client, warehouse, tmp_path, monkeypatch):
    profiles = tmp_path / "clusters.toml"
    profiles.write_text(f'[clusters.test]\naddress = "{client.scheduler.address}"\n')
    monkeypatch.setenv("ETL_CLUSTER_PROFILES", str(profiles))
    (tmp_path / "pipes").mkdir()
    (tmp_path / "pipes" / "profile_pipe.py").write_text(PIPE)
    batch = random_batch(np.random.default_rng(0), 50)
    write_batch(warehouse, "2026-01-01", batch)
    from distributed import get_task_stream

    with get_task_stream(client) as stream:
        out = CliRunner().invoke(cli, ["--pipelines", str(tmp_path / "pipes"), "run", "t_profile", "--date",
                                       "2026-01-01", "--warehouse", warehouse, "--cluster", "test", "--json"])
    assert out.exit_code == 0, out.output
    assert '"status": "committed"' in out.output
    assert any("_conform_partition" in str(t["key"]) for t in stream.data)  # the profile's scheduler did the work
    assert table_frame(f"{warehouse}/t").equals(oracle([batch]))
    unknown = CliRunner().invoke(cli, ["--pipelines", str(tmp_path / "pipes"), "run", "t_profile",
                                       "--warehouse", warehouse, "--cluster", "nope"])
    assert unknown.exit_code == 3 and "test" in unknown.output  # names the profiles that exist
