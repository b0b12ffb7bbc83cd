"""Short seeded runs of every image preset and both text objectives still produce the committed weights."""

import json

import pytest

from fingerprint import STORED, all_fingerprints


@pytest.fixture(scope="module")
def fingerprints():
    return all_fingerprints()


def test_every_run_matches_its_stored_fingerprint(fingerprints):
    stored = json.loads(STORED.read_text(encoding="utf-8"))
    assert sorted(fingerprints) == sorted(stored)
    for run, tensors in stored.items():
        assert sorted(fingerprints[run]) == sorted(tensors), run
        for name, sums in tensors.items():
            # bit-identical weights give identical sums; the tolerance admits reordered float additions only
            assert fingerprints[run][name] == pytest.approx(sums, rel=1e-5, abs=1e-7), f"{run}: {name}"
