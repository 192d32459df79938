"""The photos the tests use and the one rule for when they are missing.

crates/kenning-cli/tests/server.rs passes KENNING_TEST_DATA (../shared/data)
and KENNING_REQUIRE_DATA, which kenning-testdata sets to 1 under CI: then a
missing photo folder fails the test instead of skipping it (server.rs also
fails when pytest reports any skip under CI).
"""

import os
from pathlib import Path

import pytest

import botocore_shapes
from botocore_shapes import responses_match_botocore_model  # noqa: F401 (autouse fixture)

EXAMPLES = Path(os.environ.get("KENNING_TEST_DATA", "../shared/data")) / "misc/face_recognition/examples"


@pytest.fixture
def examples():
    """The example photos folder; a skip, or a failure under CI, without it."""
    if not EXAMPLES.is_dir():
        reason = f"../shared/data is not present (looked in {EXAMPLES})"
        if os.environ.get("KENNING_REQUIRE_DATA") == "1":
            pytest.fail(f"{reason} (KENNING_REQUIRE_DATA=1: required under CI)", pytrace=False)
        pytest.skip(reason)
    return EXAMPLES


# Every boto3 client of the run has each response checked against botocore's
# model; the test that got one off the model fails.
botocore_shapes.install_default()
