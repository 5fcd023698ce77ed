"""Every mistake of a spec in one 422: the checks beyond the schema (`service.validate`: torch,
the dataset, the plugins the workers offer) run on what is left of a spec Pydantic refused.

The fields Pydantic refused are left out (each has a default, so the rest still makes a spec);
what the checks then say about those fields, or about a field whose check reads one of them (a
scheduler walked with the default `epochs` in place of a refused one), is not reported: it would
be about a stand-in, not about what was sent."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from service.experiments import service
from service.kit.db import session_scope
from service.kit.errors import MAX_ERRORS, ErrorItem, item
from service.training.checks import check_spec
from service.training.datasets import DatasetInfo
from service.training.scheduler_checks import check_lambda_grammar
from service.training.spec import ExperimentSpec
from service.workers import service as workers

# The top-level fields each section's checks read besides its own: a refused one among them
# makes that section's findings moot.
READS: dict[str, set[str]] = {
    "split": {"dataset"},
    "model": {"dataset", "split", "batch_size"},
    "scheduler": {"base_lr", "epochs", "batch_size", "split", "dataset", "warmup"},
    "warmup": {"epochs", "scheduler", "solver"},
    "early_stopping": {"dataset", "scheduler"},
}


def errors_beyond_schema(body: Any, schema_errors: list[ErrorItem]) -> list[ErrorItem]:
    """The errors `service.validate` finds in `body` once the fields of `schema_errors` are
    left out, at their full loc (after "body")."""
    if not isinstance(body, dict):
        return []
    with session_scope() as session:
        return spec_errors(session, body, schema_errors)


def spec_errors(
    session: Session, body: dict[str, Any], schema_errors: list[ErrorItem]
) -> list[ErrorItem]:
    """`errors_beyond_schema` of one spec, on the caller's session (a batch reads its specs on
    one). `schema_errors` and the result are at locs under ["body"]."""
    refused: set[str] = set()
    for e in schema_errors:
        loc = e["loc"]
        if len(loc) < 2 or loc[0] != "body" or not isinstance(loc[1], str):
            return []  # the whole body is wrong (not an object): nothing else to check
        refused.add(loc[1])
    try:
        spec = ExperimentSpec.model_validate({k: v for k, v in body.items() if k not in refused})
    except ValidationError:
        return []
    info: DatasetInfo | None = None  # a refused dataset: checks of its size and task wait
    errors: list[ErrorItem] = []
    if "dataset" not in refused:
        info, errors = service.dataset_info(session, spec.dataset, ["dataset"])
    errors += check_spec(spec, info) + workers.check_model(session, spec.model, ["model"])
    errors += service.tag_errors(spec.tags)
    found = []
    for e in errors:
        field = str(e["loc"][0]) if e["loc"] else ""
        if field and field not in refused and not READS.get(field, set()) & refused:
            found.append(item(["body", *e["loc"]], e["msg"], e["type"]))
    if "scheduler" not in refused and READS["scheduler"] & refused:
        # The scheduler's findings above were about stand-ins; whether its lr_lambda is an
        # expression within the grammar reads nothing else, so that one is about what was sent.
        for e in check_lambda_grammar(spec.scheduler):
            found.append(item(["body", *e["loc"]], e["msg"], e["type"]))
    return found


def batch_errors_beyond_schema(body: Any, schema_errors: list[ErrorItem]) -> list[ErrorItem]:
    """POST /v1/batches: `errors_beyond_schema` of each spec of `{experiments: [...]}`, its own
    schema errors left out, at `["body", "experiments", i, ...]`; nothing when the list itself
    was refused (not a list, empty, too long). Checking stops once the answer holds MAX_ERRORS:
    a batch with a thousand broken specs is fixed from the first fifty as well."""
    specs = body.get("experiments") if isinstance(body, dict) else None
    if not isinstance(specs, list) or len(schema_errors) >= MAX_ERRORS:
        return []
    own: dict[int, list[ErrorItem]] = {}
    for e in schema_errors:
        loc = e["loc"]
        if len(loc) >= 3 and loc[:2] == ["body", "experiments"] and isinstance(loc[2], int):
            own.setdefault(loc[2], []).append(item(["body", *loc[3:]], e["msg"], e["type"]))
        elif len(loc) < 2 or loc[:2] == ["body", "experiments"]:
            return []  # the body or the list is wrong, not a spec of it
    room = MAX_ERRORS - len(schema_errors)
    found: list[ErrorItem] = []
    with session_scope() as session:
        for i, spec in enumerate(specs):
            if not isinstance(spec, dict):
                continue  # the schema said so
            for e in spec_errors(session, spec, own.get(i, [])):
                found.append(item(["body", "experiments", i, *e["loc"][1:]], e["msg"], e["type"]))
            if len(found) >= room:
                break
    return found[:room]
