"""Transient I/O on the table's own files (reads of live files, writes of staged ones) is retried in the task.

The store is real: fsspec's local filesystem under a test protocol whose opens
fail with ``ConnectionResetError`` a set number of times, as a dropped
connection to an object store does. The functions under test are the ones the
merge, locate and append tasks call.
"""

from __future__ import annotations

import pyarrow as pa
import pytest
from fsspec.implementations.local import LocalFileSystem

from etl.commit.files import FileRef, read_file, with_retries, write_file
from etl.io.storage import Location
from etl.policy.retry import RetryPolicy

SCHEMA = pa.schema([("k", pa.int64()), ("part", pa.string()), ("v", pa.string())])
FAST = RetryPolicy(max_attempts=4, base_delay=0.0, max_delay=0.0)


class FlakyOpens(LocalFileSystem):
    """Local files whose first ``fail`` opens (per path, reads and writes) raise ``ConnectionResetError``."""

    protocol = ("flakyio",)
    fail = 0
    tries: dict = {}
    failures: dict = {}

    def _open(self, path, mode="rb", **kw):
        n = self.tries[path] = self.tries.get(path, 0) + 1
        if n <= self.fail:
            self.failures[path] = self.failures.get(path, 0) + 1
            raise ConnectionResetError(f"connection reset by peer ({mode} {path}, try {n})")
        return super()._open(path, mode=mode, **kw)


@pytest.fixture
def flaky(tmp_path, monkeypatch):
    import fsspec

    fsspec.register_implementation("flakyio", FlakyOpens, clobber=True)
    monkeypatch.setattr(FlakyOpens, "tries", {})
    monkeypatch.setattr(FlakyOpens, "failures", {})
    return Location(f"flakyio://{tmp_path}")


def _write(root: Location):
    table = pa.table({"k": [1, 2, 3], "part": ["a"] * 3, "v": ["x", None, "z"]}, schema=SCHEMA)
    return write_file(root, table, {"part": "a"}, "r20260101T000000-00000000", FAST)


def test_a_staged_file_is_written_despite_transient_errors(flaky, monkeypatch):
    monkeypatch.setattr(FlakyOpens, "fail", 2)
    add = _write(flaky)
    path = f"{flaky.path}/{add['path']}"
    assert FlakyOpens.failures[path] == 2 and FlakyOpens.tries[path] == 3  # two resets, then the write
    monkeypatch.setattr(FlakyOpens, "fail", 0)
    ref = FileRef(add["path"], (("part", "a"),), add["size"], 3)
    got = read_file(flaky, ref, SCHEMA, policy=FAST)
    assert got.to_pylist() == [{"k": 1, "part": "a", "v": "x"}, {"k": 2, "part": "a", "v": None},
                               {"k": 3, "part": "a", "v": "z"}]


def test_a_live_file_is_read_despite_transient_errors(flaky, monkeypatch):
    add = _write(flaky)
    path = f"{flaky.path}/{add['path']}"
    FlakyOpens.tries.clear()
    FlakyOpens.failures.clear()
    monkeypatch.setattr(FlakyOpens, "fail", 3)
    ref = FileRef(add["path"], (("part", "a"),), add["size"], 3)
    got = read_file(flaky, ref, SCHEMA, columns=["k"], policy=FAST)
    assert got.column("k").to_pylist() == [1, 2, 3] and FlakyOpens.failures[path] == 3


def test_past_the_attempts_the_error_names_the_file_and_the_attempts(flaky, monkeypatch):
    add = _write(flaky)
    monkeypatch.setattr(FlakyOpens, "fail", 10)
    ref = FileRef(add["path"], (("part", "a"),), add["size"], 3)
    with pytest.raises(ConnectionResetError) as err:
        read_file(flaky, ref, SCHEMA, policy=FAST)
    assert any(add["path"] in n and "4 attempt(s)" in n and "attempts exhausted" in n for n in err.value.__notes__)


def test_a_permanent_error_is_not_retried():
    calls = []

    def missing():
        calls.append(1)
        raise FileNotFoundError("no such file")

    with pytest.raises(FileNotFoundError) as err:
        with_retries(missing, "reading data file", "t/part-1.parquet", FAST)
    assert len(calls) == 1 and "permanent" in err.value.__notes__[0]


def test_backoff_waits_are_jittered_within_the_policy_caps():
    waits, calls = [], []

    def reset():
        calls.append(1)
        raise TimeoutError("read timed out")

    policy = RetryPolicy(max_attempts=5, base_delay=0.5, max_delay=1.0)
    with pytest.raises(TimeoutError):
        with_retries(reset, "reading data file", "t/p.parquet", policy, sleep=waits.append)
    assert len(calls) == 5 and len(waits) == 4
    assert all(0.0 <= w <= policy.cap(i) for i, w in enumerate(waits))
