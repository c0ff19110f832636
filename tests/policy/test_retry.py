"""The retry policy's decisions: bounded, exponential, fully jittered; permanent errors never retried. Pure."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.errors import ClusterError, CommitError, ConfigError, ContractError, SchemaError, SourceError
from etl.policy.retry import RetryPolicy, effective, is_transient, is_transient_io

policies = st.builds(lambda n, base, factor: RetryPolicy(max_attempts=n, base_delay=base, max_delay=base * factor),
                     st.integers(1, 12), st.floats(0.0, 5.0), st.floats(1.0, 100.0))


@settings(max_examples=300, deadline=None)
@given(policies, st.integers(0, 40), st.integers(0, 2**32))
def test_a_transient_failure_is_retried_within_the_cap_until_the_attempts_run_out(policy, attempt, seed):
    d = policy.decide(attempt, ConnectionResetError("reset"), random.Random(seed), transient=is_transient_io)
    assert d.retry == (attempt + 1 < policy.max_attempts)
    assert 0.0 <= d.delay <= policy.cap(attempt) <= policy.max_delay
    if not d.retry:
        assert d.delay == 0.0 and d.reason == "attempts exhausted"


def test_caps_double_from_the_base_up_to_the_maximum():
    p = RetryPolicy(max_attempts=10, base_delay=0.25, max_delay=3.0)
    assert [p.cap(a) for a in range(6)] == [0.25, 0.5, 1.0, 2.0, 3.0, 3.0]
    assert p.cap(10_000) == 3.0  # no overflow however long it ran


def test_delays_are_fully_jittered_over_the_whole_cap():
    p = RetryPolicy(max_attempts=100, base_delay=1.0, max_delay=1.0)
    rng = random.Random(3)
    delays = [p.decide(0, TimeoutError(), rng, transient=is_transient_io).delay for _ in range(2_000)]
    assert min(delays) >= 0.0 and max(delays) <= 1.0
    assert min(delays) < 0.05 and max(delays) > 0.95  # full jitter: from ~0 to ~the cap, not cap/2..cap
    assert 0.45 < sum(delays) / len(delays) < 0.55
    again = [p.decide(0, TimeoutError(), random.Random(3), transient=is_transient_io).delay for _ in range(3)]
    assert again[0] == delays[0]  # a seeded rng makes the delays reproducible


@pytest.mark.parametrize("exc", [SchemaError("column x"), ContractError("budget"), ConfigError("bad"),
                                 SourceError("cannot parse"), ValueError("not a parquet file"), KeyError("k"),
                                 FileNotFoundError("gone"), PermissionError("denied"), IsADirectoryError("dir")])
def test_permanent_errors_of_a_read_are_never_retried(exc):
    d = RetryPolicy(max_attempts=8).decide(0, exc, random.Random(0), transient=is_transient_io)
    assert (d.retry, d.delay, d.reason) == (False, 0.0, "permanent")


@pytest.mark.parametrize("exc", [SchemaError("x"), ContractError("x"), ConfigError("x"), SourceError("x"),
                                 KeyError("bug"), ZeroDivisionError()])
def test_permanent_errors_of_a_batch_are_never_retried(exc):
    assert not RetryPolicy().decide(0, exc).retry


@pytest.mark.parametrize("exc", [ClusterError("lost"), CommitError("conflict"), OSError(5, "EIO"), TimeoutError()])
def test_transient_errors_of_a_batch_are_retried(exc):
    assert is_transient(exc) and RetryPolicy().decide(0, exc).retry


def test_io_errors_are_known_through_their_causes_and_by_foreign_class_names():
    class EndpointConnectionError(Exception):  # botocore's, which is not an OSError
        pass

    wrapped = RuntimeError("read failed")
    wrapped.__cause__ = ConnectionResetError("reset")
    assert is_transient_io(wrapped) and is_transient_io(EndpointConnectionError("no route"))
    assert is_transient_io(OSError("I/O error")) and not is_transient_io(RuntimeError("bug"))
    missing = RuntimeError("read failed")
    missing.__cause__ = FileNotFoundError("gone")
    assert not is_transient_io(missing)


def test_the_policy_that_applies_is_the_calls_then_the_pipelines_then_the_environments(monkeypatch):
    monkeypatch.setenv("ETL_RETRY_MAX_ATTEMPTS", "3")
    call, pipe = RetryPolicy(max_attempts=9), RetryPolicy(max_attempts=5)
    assert effective(call, pipe) is call and effective(None, pipe) is pipe
    assert effective(None, None).max_attempts == 3
