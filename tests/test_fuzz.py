"""Every parser a user's files reach either works or raises the one user-error type with a one-line message.

A small fixed share of generated inputs per parser runs here; ``python benchmarks/fuzz.py`` runs 1,000+ each."""

import pytest
from hypothesis import HealthCheck, given, settings

from fuzz_targets import TARGETS, outcome

SUITE_EXAMPLES = 25


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_parser_gives_a_result_or_one_clear_error(name):
    strategy, feed = TARGETS[name]

    @settings(max_examples=SUITE_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def check(item):
        result = outcome(feed, item)
        assert not result.startswith("other"), f"{name}: {result} for {item!r:.300}"

    check()
