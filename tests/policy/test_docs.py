"""The backfill planner's docstring examples run."""

import doctest

import etl.policy.backfill


def test_examples_run():
    result = doctest.testmod(etl.policy.backfill)
    assert result.failed == 0 and result.attempted >= 8
