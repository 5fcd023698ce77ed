"""`glidepath datasets ls|upload`: the datasets a spec may name, and adding one from a file over
`POST /v1/datasets`."""

from __future__ import annotations

import csv
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from service.cli.options import EXIT_BAD_INPUT, EXIT_HELP, JsonOpt, TokenOpt, UrlOpt
from service.cli.render import columns_table, new_console, plain, print_json, timestamp
from service.cli.session import connected, err
from service.client.types import Dataset

datasets_app = typer.Typer(help="Datasets: list, upload.", no_args_is_help=True)

NAME_CHARS = re.compile(r"[^a-z0-9_-]+")  # the API's names: 1-64 of a-z 0-9 _ -


class Task(StrEnum):
    CLASSIFICATION = "classification"
    REGRESSION = "regression"


def default_name(file: Path) -> str:
    """The name a file is uploaded under when none is given: its stem, lower-cased, each run of
    other characters a `-` (`House Prices.csv` → `house-prices`)."""
    return NAME_CHARS.sub("-", file.stem.lower()).strip("-")[:64]


def csv_columns(file: Path) -> list[str]:
    """The header row of a .csv (empty when it has none or cannot be read as text)."""
    try:
        with file.open(newline="", encoding="utf-8-sig") as fp:
            return [c.strip() for c in next(csv.reader(fp), [])]
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def shape_str(d: Dataset) -> str:
    return "×".join(map(str, d.get("image_shape") or d["feature_shape"]))


def source_str(d: Dataset) -> str:
    if d["builtin"]:
        return "built in"
    source = d.get("source") or {}
    if source.get("kind") == "upload":
        label = source.get("label_column")
        return f"{source.get('filename', 'upload')}" + (f" (labels: {label})" if label else "")
    return str(source.get("kind") or "")


@datasets_app.command("ls", epilog=EXIT_HELP)
def datasets_ls(json_out: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Every dataset a spec's `dataset` may name: built in, then uploaded and generated."""
    with connected(url, token) as client:
        found = client.datasets()
    if json_out:
        print_json(found)
        return
    table = columns_table(
        ("name", "task", "samples", "features", "classes", "source", "added"),
        right=("samples", "classes"),
    )
    for d in found:
        classes = "" if d.get("n_classes") is None else str(d["n_classes"])
        table.add_row(plain(d["name"]), d["task"], f"{d['n_samples']:,}", shape_str(d), classes,
                      plain(source_str(d)), timestamp(d.get("created_at")))  # fmt: skip
    new_console().print(table)


@datasets_app.command("upload", epilog=EXIT_HELP)
def datasets_upload(
    file: Annotated[
        Path,
        typer.Argument(
            help=".npz with arrays x and y, or .csv with a header row (every column but the "
            "label column a numeric feature; --label-column required).",
            show_default=False,
        ),
    ],
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            "-n",
            help="What specs call it (1-64 of a-z 0-9 _ -); default the file's name, "
            "lower-cased, without its extension.",
        ),
    ] = None,
    label_column: Annotated[
        str | None,
        typer.Option(
            "--label-column",
            "-l",
            help="Required for a .csv: the header name of the label (or regression target) "
            "column. Not for an .npz, whose labels are its array y.",
        ),
    ] = None,
    task: Annotated[
        Task | None,
        typer.Option(
            "--task",
            help="Default: inferred (integer or string labels with at most 100 values are "
            "classification, anything else regression).",
        ),
    ] = None,
    json_out: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Upload a dataset from a file (checked by the service: never unpickled); print what it
    holds and the name a spec uses."""
    if not file.is_file():
        err(f"error: cannot read {file}: {'not a file' if file.exists() else 'no such file'}")
        raise typer.Exit(EXIT_BAD_INPUT)
    if file.suffix.lower() == ".csv" and label_column is None:
        columns = csv_columns(file)
        listed = f"; its columns: {', '.join(columns)}" if columns else ""
        err(f"error: a .csv upload needs --label-column NAME, the header name of its label "
            f"(or target) column{listed}")  # fmt: skip
        raise typer.Exit(EXIT_BAD_INPUT)
    dataset_name = name if name is not None else default_name(file)
    with connected(url, token) as client:
        d = client.upload_dataset(
            file, dataset_name, label_column=label_column, task=task.value if task else None
        )
    if json_out:
        print_json(d)
        return
    classes = f", {d['n_classes']} classes" if d.get("n_classes") is not None else ""
    shape = d.get("image_shape")
    each = f"{shape_str(d)} images" if shape else f"{d['feature_shape'][0]} features"
    typer.echo(
        f"uploaded dataset {d['name']}: {d['task']}, {d['n_samples']:,} samples, {each}{classes}"
    )
    typer.echo(f'a spec names it as  "dataset": "{d["name"]}"')
