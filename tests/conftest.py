"""Test-wide set-up: every test starts from the same random state.

Model builders draw their weights from torch's global generator, and so do
``torch.randn`` calls in library code (e.g. the example input of an export).
Without a reset, a test's weights depend on how many numbers the tests before
it drew, so a test that passes alone could fail (or pass) in a full run
depending on which tests ran first.  Resetting the global generators before
each test makes every test see the same numbers alone and in the suite.
Tests that need other draws still seed their own generators.

``EDGEVID_TEST_SEED=N pytest ...`` runs the tests from another seed, to check
that a bound holds over weights rather than for one draw.
"""
from __future__ import annotations

import os
import random
import sys

import pytest

SEED = int(os.environ.get("EDGEVID_TEST_SEED", "0"))


@pytest.fixture(autouse=True)
def _reset_global_rngs() -> None:
    random.seed(SEED)
    if "numpy" in sys.modules:  # not imported here: some tests check what a fresh process imports
        sys.modules["numpy"].random.seed(SEED)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(SEED)


@pytest.fixture(autouse=True, scope="session")
def _edgevid_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Generated held-out sets (``edge.heldout``) go to a folder of this session, not ~/.cache."""
    os.environ.setdefault("EDGEVID_CACHE", str(tmp_path_factory.mktemp("edgevid-cache")))
