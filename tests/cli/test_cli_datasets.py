"""`glidepath datasets upload|ls` in-process against the API (the `cli` fixture, both
databases): what a user who has a .csv or an .npz sees, the label column a .csv needs, and the
dataset usable by name once uploaded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from service.cli import app


def houses_csv(tmp_path: Path, filename: str = "houses.csv") -> Path:
    rng = np.random.default_rng(0)
    lines = ["rooms,area,price"]
    for i in range(40):
        rooms, area = int(rng.integers(1, 6)), float(rng.uniform(30, 200))
        lines.append(f"{rooms},{area:.1f},{1000 * rooms + 3 * area + i:.1f}")
    path = tmp_path / filename
    path.write_text("\n".join(lines) + "\n")
    return path


def listed(cli: CliRunner) -> dict[str, dict[str, object]]:
    result = cli.invoke(app, ["datasets", "ls", "--json"])
    assert result.exit_code == 0, result.output
    return {d["name"]: d for d in json.loads(result.stdout)}


def test_a_csv_upload_with_its_label_column_is_listed_and_trains_by_name(
    cli: CliRunner, tmp_path: Path
) -> None:
    result = cli.invoke(
        app, ["datasets", "upload", str(houses_csv(tmp_path)), "--label-column", "price"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "uploaded dataset houses: regression, 40 samples, 2 features",
        'a spec names it as  "dataset": "houses"',
    ]
    houses = listed(cli)["houses"]
    assert houses["task"] == "regression" and houses["feature_shape"] == [2]
    assert houses["source"]["label_column"] == "price"  # type: ignore[index]

    table = cli.invoke(app, ["datasets", "ls"])
    assert "houses.csv (labels: price)" in table.stdout and "built in" in table.stdout

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"dataset": "houses", "base_lr": 0.01, "epochs": 2}))
    submitted = cli.invoke(app, ["submit", str(spec), "--json"])
    assert submitted.exit_code == 0, submitted.output
    assert json.loads(submitted.stdout)["dataset"] == "houses"


def test_a_csv_without_label_column_is_refused_naming_the_option_and_its_columns(
    cli: CliRunner, tmp_path: Path
) -> None:
    result = cli.invoke(app, ["datasets", "upload", str(houses_csv(tmp_path))])
    assert result.exit_code == 2
    assert "a .csv upload needs --label-column NAME" in result.stderr
    assert "its columns: rooms, area, price" in result.stderr
    assert "houses" not in listed(cli)  # nothing sent


def test_a_label_column_the_csv_lacks_is_the_apis_422_with_the_field(
    cli: CliRunner, tmp_path: Path
) -> None:
    path = houses_csv(tmp_path)
    result = cli.invoke(app, ["datasets", "upload", str(path), "-l", "cost", "-n", "h2"])
    assert result.exit_code == 2
    assert "HTTP 422 from POST /v1/datasets" in result.stderr
    assert "body.label_column: no column 'cost' in the header" in result.stderr
    assert "h2" not in listed(cli)


def test_an_npz_is_named_after_its_file_and_its_task_can_be_given(
    cli: CliRunner, tmp_path: Path
) -> None:
    path = tmp_path / "My Images.npz"
    np.savez(path, x=np.random.default_rng(1).random((30, 1, 4, 4)), y=np.arange(30) % 3)
    result = cli.invoke(app, ["datasets", "upload", str(path), "--task", "classification",
                              "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert (body["name"], body["task"], body["n_classes"]) == ("my-images", "classification", 3)
    assert body["image_shape"] == [1, 4, 4]
    human = cli.invoke(app, ["datasets", "upload", str(path), "-n", "imgs"])
    assert human.stdout.startswith("uploaded dataset imgs: classification, 30 samples, 1×4×4 "
                                   "images, 3 classes\n")  # fmt: skip

    # An .npz holds its labels in y: a label column is the API's 422.
    again = cli.invoke(app, ["datasets", "upload", str(path), "-n", "other", "-l", "y"])
    assert again.exit_code == 2 and "label_column applies to .csv uploads" in again.stderr


def test_a_missing_file_or_a_task_out_of_the_choices_exits_2(
    cli: CliRunner, tmp_path: Path
) -> None:
    missing = cli.invoke(app, ["datasets", "upload", str(tmp_path / "nope.csv")])
    assert missing.exit_code == 2 and "nope.csv: no such file" in missing.stderr
    (tmp_path / "dir.csv").mkdir()
    directory = cli.invoke(app, ["datasets", "upload", str(tmp_path / "dir.csv")])
    assert directory.exit_code == 2 and "dir.csv: not a file" in directory.stderr
    path = houses_csv(tmp_path)
    bad = cli.invoke(app, ["datasets", "upload", str(path), "-l", "price", "--task", "ranking"])
    assert bad.exit_code == 2 and "ranking" in bad.output


def test_upload_help_says_a_csv_needs_its_label_column(cli: CliRunner) -> None:
    result = cli.invoke(app, ["datasets", "upload", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "Required for a .csv: the header name of the label" in result.stdout
