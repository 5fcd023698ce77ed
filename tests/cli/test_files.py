"""The submit-file loader: YAML/JSON/stdin, and which endpoint a document goes to."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from service.client import FileError, classify, load_submission

SPEC = {"dataset": "digits", "base_lr": 0.1, "epochs": 3}


@pytest.mark.parametrize(
    ("doc", "kind", "endpoint"),
    [
        (SPEC, "experiment", "/v1/experiments"),
        ([SPEC, SPEC], "batch", "/v1/batches"),
        ({"name": "b", "experiments": [SPEC]}, "batch", "/v1/batches"),
        ({"base": SPEC, "strategy": "grid", "parameters": {"base_lr": [0.1]}}, "sweep", None),
        ({"strategy": "lr_coarse_to_fine"}, "sweep", "/v1/sweeps"),
        (
            {"lr_range_test": {"spec": SPEC, "min_lr": 1e-5, "max_lr": 1, "steps": 50}},
            "range_test",
            "/v1/lr-range-tests",
        ),
    ],
)
def test_classify(doc: Any, kind: str, endpoint: str | None) -> None:
    sub = classify(doc, "f.yaml")
    assert sub.kind == kind
    if endpoint:
        assert sub.endpoint == endpoint
    assert all(isinstance(s, dict) for s in sub.specs())


def test_a_list_becomes_the_batch_body() -> None:
    assert classify([SPEC]).body == {"experiments": [SPEC]}
    range_test = {"spec": SPEC, "steps": 9}
    assert classify({"lr_range_test": range_test}).body == range_test


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (None, "got an empty document"),
        ("base_lr: 0.1", "got a string"),
        (3, "got a number"),
        ([], "expected a non-empty list of specs"),
        ([SPEC, 3], "1: expected a spec"),
        ({"experiments": {"a": 1}}, "experiments: expected a non-empty list"),
        ({"experiments": [SPEC], "base": SPEC}, "both 'experiments'"),
        ({"lr_range_test": {"spec": SPEC}, "name": "x"}, "move name inside it"),
        ({"lr_range_test": [SPEC]}, "lr_range_test must be a mapping"),
    ],
)
def test_what_cannot_be_classified(doc: Any, message: str) -> None:
    with pytest.raises(FileError, match=message):
        classify(doc, "f.yaml")


def test_yaml_reads_exponent_numbers_as_floats(tmp_path: Path) -> None:
    f = tmp_path / "s.yml"
    f.write_text("base_lr: 1e-3\nscheduler: {type: StepLR, params: {step_size: 2, gamma: 5E-1}}\n")
    body = load_submission(f).body
    assert body["base_lr"] == 0.001 and body["scheduler"]["params"]["gamma"] == 0.5
    assert isinstance(body["scheduler"]["params"]["step_size"], int)


def test_json_by_extension_and_stdin_in_either_format(tmp_path: Path) -> None:
    f = tmp_path / "s.json"
    f.write_text('[{"base_lr": 0.1}]')
    assert load_submission(f).kind == "batch"
    assert load_submission("-", io.StringIO('{"base_lr": 0.1}')).body == {"base_lr": 0.1}
    sub = load_submission("-", io.StringIO("base: {epochs: 2}\nstrategy: grid\n"))
    assert sub.kind == "sweep" and sub.source == "<stdin>"


def test_unreadable_and_unparseable_files(tmp_path: Path) -> None:
    with pytest.raises(FileError, match="cannot read"):
        load_submission(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.json"
    bad.write_text('{"base_lr": 0.1,}')
    with pytest.raises(FileError, match=r"invalid JSON at line 1, column 17"):
        load_submission(bad)
    bad = tmp_path / "bad.yaml"
    bad.write_text("base_lr: [0.1\nepochs: 3\n")
    with pytest.raises(FileError, match=r"invalid YAML at line \d+, column \d+"):
        load_submission(bad)


def test_the_document_is_plain_json(tmp_path: Path) -> None:
    """What a body can carry: a YAML date is the text written, keys are the strings JSON
    writes, an explicit timestamp its ISO text; NaN, a NaN key, two keys that are one in
    JSON are refused with where they are."""
    f = tmp_path / "s.yaml"
    f.write_text(
        "name: 2024-01-01\nat: !!timestamp 2024-01-02\n"
        "params: {7: a, 2.50: b, true: c, null: d, 2024-01-03: e}\n"
    )
    assert load_submission(f).body == {
        "name": "2024-01-01",
        "at": "2024-01-02",
        "params": {"7": "a", "2.5": "b", "true": "c", "null": "d", "2024-01-03": "e"},
    }
    for text, message in [
        ("base_lr: .nan", r"s.yaml: base_lr: NaN is not a number the API accepts"),
        ("scheduler: {params: {.inf: 1}}", r"scheduler.params: a mapping key Infinity"),
        ("tags: {1: a, '1': b}", r"tags.1: the key is given twice"),
    ]:
        f.write_text(text)
        with pytest.raises(FileError, match=message):
            load_submission(f)


def test_stdin_that_is_not_utf8() -> None:
    with pytest.raises(FileError, match="<stdin>: cannot read: not UTF-8 text"):
        load_submission("-", io.StringIO("name: caf\udce9"))  # surrogateescape's
