"""Checks every response Kenning sends against botocore's model of Rekognition.

botocore's parser is lenient: it drops fields the model does not know and
takes a string where a number belongs, so a client test can pass while the
wire differs from AWS's. `check` walks the raw JSON body instead: every
field must be a member of the operation's output shape with the shape's
type, enum value, length, pattern and range, and every required member must
be present; an error must carry one of the operation's declared exception
names (or a protocol-level one AWS sends for any operation).

`install(events)` hooks botocore's `before-parse` event on a session, so
every client made from it afterwards has each response checked; the
problems gather in `PROBLEMS` and the checked operations in `CHECKED`. A
conftest.py calls `install_default()` and imports the autouse fixture
`responses_match_botocore_model`, which fails the test whose calls got a
response off the model.
"""

import base64
import binascii
import json
import re

import boto3
import pytest

# Exceptions AWS's front end sends for any JSON 1.1 operation; they are not
# in the operations' error lists of the model.
PROTOCOL_ERRORS = {
    "AccessDeniedException",
    "IncompleteSignatureException",
    "InvalidSignatureException",
    "MissingAuthenticationTokenException",
    "UnrecognizedClientException",
    "SerializationException",
    "UnknownOperationException",
    "ValidationException",
    "ThrottlingException",
    "ServiceUnavailableException",
    "InternalFailure",
}
# Fields AWS puts in every JSON 1.1 error body besides the shape's members.
ERROR_FIELDS = {"__type", "message", "Message", "Code", "Logref"}

# Kenning's documented additions to Rekognition's responses, by the shape
# that carries them (SDKs ignore them): the false-match estimate of a search
# (whatever it holds: Calibration, QualityRule) and the calibration in force
# for a collection (docs/server.md, "Deliberate
# differences"), a stream processor's counters (docs/streams.md) and a
# candidate's review (docs/accountability.md). Anything
# else outside the model is a problem.
EXTENSIONS = {
    "DescribeCollectionResponse": {"FalseMatchEstimate", "Calibration"},
    "DescribeStreamProcessorResponse": {"Counters"},
    **{
        shape: {"FalseMatchEstimate"}
        for shape in (
            "SearchFacesResponse",
            "SearchFacesByImageResponse",
            "SearchUsersResponse",
            "SearchUsersByImageResponse",
        )
    },
    "FaceMatch": {"ReviewId", "ReviewStatus"},
    "UserMatch": {"ReviewId", "ReviewStatus"},
}
# Known departures from the model, each documented in docs/server.md: the
# face's IndexFacesModelVersion is the recogniser's name (e.g.
# "dlib-resnet-v1"), where the model's pattern wants digits and dots.
PATTERN_EXEMPT = {"IndexFacesModelVersion"}

PROBLEMS = []
CHECKED = set()


def _check(shape, value, path, out):
    kind = shape.type_name
    meta = shape.metadata
    if kind == "structure":
        if not isinstance(value, dict):
            out.append(f"{path}: {type(value).__name__} where structure {shape.name} belongs")
            return
        for key, v in value.items():
            if key not in shape.members:
                if key in EXTENSIONS.get(shape.name, ()):
                    continue
                out.append(f"{path}.{key}: not a member of {shape.name}")
            elif v is not None:
                _check(shape.members[key], v, f"{path}.{key}", out)
        for key in shape.required_members:
            if key not in value:
                out.append(f"{path}.{key}: required member of {shape.name} missing")
    elif kind == "list":
        if not isinstance(value, list):
            out.append(f"{path}: {type(value).__name__} where list {shape.name} belongs")
            return
        _length(shape, len(value), path, out)
        for i, v in enumerate(value):
            _check(shape.member, v, f"{path}[{i}]", out)
    elif kind == "map":
        if not isinstance(value, dict):
            out.append(f"{path}: {type(value).__name__} where map {shape.name} belongs")
            return
        for k, v in value.items():
            _check(shape.key, k, f"{path}<key>", out)
            _check(shape.value, v, f"{path}[{k!r}]", out)
    elif kind == "string":
        if not isinstance(value, str):
            out.append(f"{path}: {type(value).__name__} where string {shape.name} belongs")
            return
        if shape.enum and value not in shape.enum:
            out.append(f"{path}: {value!r} is not one of {shape.name}'s {sorted(shape.enum)}")
        _length(shape, len(value), path, out)
        pattern = meta.get("pattern")
        if pattern and shape.name not in PATTERN_EXEMPT and not re.fullmatch(pattern, value):
            out.append(f"{path}: {value!r} does not match {shape.name}'s pattern {pattern}")
    elif kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            out.append(f"{path}: {value!r} where integer {shape.name} belongs")
            return
        _range(shape, value, path, out)
    elif kind in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            out.append(f"{path}: {value!r} where number {shape.name} belongs")
            return
        _range(shape, value, path, out)
    elif kind == "boolean":
        if not isinstance(value, bool):
            out.append(f"{path}: {value!r} where boolean {shape.name} belongs")
    elif kind == "timestamp":
        # JSON 1.1 sends timestamps as epoch seconds.
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            out.append(f"{path}: {value!r} where epoch-seconds timestamp {shape.name} belongs")
    elif kind == "blob":
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, TypeError, ValueError):
            out.append(f"{path}: not base64 for blob {shape.name}")
    else:
        out.append(f"{path}: shape type {kind} of {shape.name} is not checked")


def _length(shape, n, path, out):
    lo, hi = shape.metadata.get("min"), shape.metadata.get("max")
    if lo is not None and n < lo or hi is not None and n > hi:
        out.append(f"{path}: length {n} outside {shape.name}'s [{lo}, {hi}]")


def _range(shape, v, path, out):
    lo, hi = shape.metadata.get("min"), shape.metadata.get("max")
    if lo is not None and v < lo or hi is not None and v > hi:
        out.append(f"{path}: {v} outside {shape.name}'s [{lo}, {hi}]")


def check_shape(shape, value, path):
    """The problems of `value` as an instance of `shape` (a botocore shape),
    for JSON Kenning sends outside a response, e.g. stream records."""
    out = []
    _check(shape, value, path, out)
    return out


def check(operation_model, status, body):
    """The problems of one response (status and raw body) of an operation."""
    op = operation_model.name
    try:
        value = json.loads(body) if body else {}
    except ValueError:
        return [f"{op}: HTTP {status} body is not JSON: {body[:200]!r}"]
    out = []
    if status < 300:
        shape = operation_model.output_shape
        if shape is None:
            if value:
                out.append(f"{op}: a body where the model has no output: {value}")
        else:
            _check(shape, value, op, out)
        return out
    if not isinstance(value, dict) or not isinstance(value.get("__type"), str):
        return [f"{op}: HTTP {status} error without __type: {value!r}"]
    name = value["__type"].rsplit("#", 1)[-1]
    declared = {e.name: e for e in operation_model.error_shapes}
    if name not in declared and name not in PROTOCOL_ERRORS:
        out.append(f"{op}: HTTP {status} {name} is not among its errors {sorted(declared)}")
    members = declared[name].members if name in declared else {}
    for key in value:
        if key not in ERROR_FIELDS and key not in members:
            out.append(f"{op}: error field {key} is not in {name}")
    msg = value.get("message", value.get("Message"))
    if not isinstance(msg, str) or not msg:
        out.append(f"{op}: HTTP {status} {name} without a message")
    return out


def _before_parse(operation_model, response_dict, **_):
    CHECKED.add(operation_model.name)
    for p in check(operation_model, response_dict["status_code"], response_dict["body"]):
        PROBLEMS.append(p)


def install(events):
    """Checks every Rekognition response of clients later made from `session`
    (their event emitter, e.g. boto3.DEFAULT_SESSION.events)."""
    events.register("before-parse.rekognition", _before_parse)


def install_default():
    """Checks the responses of every boto3 client made with `boto3.client`."""
    boto3.setup_default_session()
    install(boto3.DEFAULT_SESSION.events)


@pytest.fixture(autouse=True)
def responses_match_botocore_model():
    """Fails the test if any response it got is off botocore's model."""
    PROBLEMS.clear()
    yield
    assert not PROBLEMS, "responses off botocore's model:\n" + "\n".join(PROBLEMS)
