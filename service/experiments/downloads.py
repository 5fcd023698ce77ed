"""GET /v1/experiments/{id}/model: the run's final model (safetensors), verified against the
sha256 recorded when the worker wrote it before its first byte is sent.

`Store.open_verified` opens a local store's file and hashes it, and the bytes are streamed from
that same open file (a rewrite or a delete meanwhile cannot change what is sent); an S3 object is
downloaded to a temporary file first (the sha256 cannot be checked while streaming once the
headers are out) and streamed from there. A run has a model only once it has ended: succeeded,
early stopped, or cancelled after it started; diverged and failed runs, runs cancelled while
queued and LR range tests never get one. Statuses: 404 no such experiment; 409 no model (yet, or
ever), or the stored one is missing or corrupt (the bytes are never sent); 503 with Retry-After
when the store does not answer."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from sqlalchemy.orm import Session
from starlette.responses import Response, StreamingResponse

from service.artifacts import service as artifacts
from service.artifacts.models import Artifact
from service.artifacts.repository import ArtifactRepository
from service.artifacts.store import CHUNK, ArtifactMissing, CorruptArtifact, StoreUnavailable
from service.experiments import service
from service.experiments.models import Experiment
from service.kit.errors import Conflict, Unavailable
from service.training.status import FINAL, ExperimentStatus

PATH_ID: list[str | int] = ["path", "experiment_id"]
MEDIA_TYPE = "application/octet-stream"


class NoModel(Conflict):
    type_ = "no_model"


class CorruptModel(Conflict):
    """The stored model's bytes are not the ones recorded when it was written."""

    type_ = "corrupt_artifact"


class MissingModel(Conflict):
    """The model is recorded but its object is gone from the store."""

    type_ = "artifact_missing"


@dataclass
class ModelFile:
    """A verified model, open at its first byte; `chunks()` reads it and closes it."""

    file: IO[bytes]
    size: int
    sha256: str

    def chunks(self) -> Iterator[bytes]:
        try:
            while chunk := self.file.read(CHUNK):
                yield chunk
        finally:
            self.file.close()


def etag(sha256: str) -> str:
    return f'"{sha256}"'


def filename(experiment_id: int) -> str:
    return f"experiment-{experiment_id}.safetensors"


def response(session: Session, experiment_id: int, if_none_match: str | None) -> Response:
    """The route's answer: the verified bytes (200), or 304 when `If-None-Match` names the
    recorded sha256 (the store is not read)."""
    row = record(session, experiment_id)
    if (unchanged := _not_modified(row, if_none_match)) is not None:
        return unchanged
    model = open_verified(experiment_id, row.key, row.sha256)
    headers = _headers(experiment_id, model.size, model.sha256)
    return StreamingResponse(model.chunks(), media_type=MEDIA_TYPE, headers=headers)


def head(session: Session, experiment_id: int, if_none_match: str | None) -> Response:
    """HEAD: GET's headers (size, ETag, file name) from the model's record, without reading
    the store, so a script can check for a model or a change cheaply (404, 409 as GET)."""
    row = record(session, experiment_id)
    if (unchanged := _not_modified(row, if_none_match)) is not None:
        return unchanged
    return Response(media_type=MEDIA_TYPE, headers=_headers(experiment_id, row.size, row.sha256))


def _not_modified(row: Artifact, if_none_match: str | None) -> Response | None:
    """304 when `If-None-Match` names the recorded sha256 (the store is not read)."""
    if if_none_match is not None and _matches(if_none_match, row.sha256):
        return Response(status_code=304, headers={"ETag": etag(row.sha256)})
    return None


def _headers(experiment_id: int, size: int, sha256: str) -> dict[str, str]:
    return {
        "Content-Length": str(size),
        "Content-Disposition": f'attachment; filename="{filename(experiment_id)}"',
        "ETag": etag(sha256),
    }


def _matches(if_none_match: str, sha256: str) -> bool:
    tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return "*" in tags or etag(sha256) in tags


def _no_model(e: Experiment) -> NoModel:
    if e.kind != "train":  # whatever its status: "not ended yet" would promise one
        return NoModel(
            f"experiment {e.id} is an LR range test, which keeps no model (it trains only to "
            f"measure the loss at each LR); its result is at GET /v1/lr-range-tests/{e.id}",
            loc=PATH_ID,
        )
    if e.status == ExperimentStatus.QUEUED:
        why = "it is queued; its model is written when it ends"
    elif e.status not in FINAL:
        why = f"it is {e.status}; its model is written when it ends"
    elif e.status == ExperimentStatus.CANCELLED and not e.attempt:
        why = "it was cancelled before it trained, so it never got one"
    elif e.status == ExperimentStatus.CANCELLED:
        why = "it was cancelled while running; a cancelled run keeps no model"
    else:
        why = f"it ended {e.status} and a {e.status} run keeps no model"
    return NoModel(f"experiment {e.id} has no model: {why}", loc=PATH_ID)


def record(session: Session, experiment_id: int) -> Artifact:
    """The model's artifact row (key, sha256, size); 404 or 409 (`NoModel`) when there is none
    to serve. Only an ended run's model is served, as `ExperimentOut.model` shows it."""
    experiment = service.get(session, experiment_id)
    key = artifacts.model_key(experiment_id)
    row = ArtifactRepository(session).by_key(key) if experiment.status in FINAL else None
    if row is None:
        raise _no_model(experiment)
    return row


def open_verified(experiment_id: int, key: str, sha256: str) -> ModelFile:
    """Open the stored model and check its sha256; 409 (`MissingModel`, `CorruptModel`) when
    it is missing or corrupt, 503 when the store does not answer."""
    try:
        f = artifacts.store().open_verified(key, sha256)
    except StoreUnavailable as exc:
        raise Unavailable(f"the artifact store is unavailable; retry shortly: {exc}",
                          loc=PATH_ID, headers={"Retry-After": "5"}) from exc  # fmt: skip
    except ArtifactMissing as exc:
        raise MissingModel(f"experiment {experiment_id}'s model is recorded but missing from the "
                       f"artifact store ({key})", loc=PATH_ID) from exc  # fmt: skip
    except CorruptArtifact as exc:
        raise CorruptModel(f"experiment {experiment_id}'s stored model is corrupt: its sha256 is "
                       f"not the one recorded when it was written, so it is not served ({key})",
                       loc=PATH_ID) from exc  # fmt: skip
    size = os.fstat(f.fileno()).st_size
    return ModelFile(file=f, size=size, sha256=sha256)
