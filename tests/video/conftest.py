"""Every Rekognition response of the video suite is checked against
botocore's model (tests/python/botocore_shapes.py): the test whose calls got
a response off the model fails."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
import botocore_shapes  # noqa: E402
from botocore_shapes import responses_match_botocore_model  # noqa: E402,F401 (autouse fixture)

botocore_shapes.install_default()
