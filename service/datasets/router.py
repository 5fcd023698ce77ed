"""`/v1/datasets`: list, read, and add (a multipart upload or a JSON generator request)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.types import Message

from service.datasets import files, service
from service.datasets.schemas import DatasetList, DatasetOut, GeneratorIn, Upload, UploadForm
from service.kit.deps import in_session
from service.kit.errors import InvalidInput

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

JSON_LIMIT = 64 * 1024  # a generator request is a few fields
FORM_SLACK = 1024 * 1024  # boundaries and the small form fields around the file

_UPLOAD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "file"],
    "properties": {
        "name": {"type": "string", "pattern": files.NAME_RE.pattern},
        "file": {"type": "string", "format": "binary", "description": ".npz (x, y) or .csv"},
        "label_column": {"type": "string", "description": "required for .csv"},
        "task": {"type": "string", "enum": list(files.TASKS), "description": "default: inferred"},
    },
}

_CREATE_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": _UPLOAD_SCHEMA},
            "application/json": {"schema": GeneratorIn.model_json_schema()},
        },
    }
}


def _body_errors(exc: ValidationError) -> RequestValidationError:
    """Pydantic errors of a body parsed by hand, shaped like FastAPI's own (loc under "body")."""
    return RequestValidationError(
        [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
    )


def _capped(request: Request, cap: int, loc: list[str | int]) -> Request:
    """The same request, refused with 413 as soon as its body grows past `cap` bytes (a declared
    Content-Length is checked before anything is read)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit():
        files.check_size(int(declared), cap, "the request body", tuple(str(p) for p in loc))
    seen = 0
    receive: Callable[[], Awaitable[Message]] = request.receive

    async def limited() -> Message:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        files.check_size(seen, cap, "the request body", tuple(str(p) for p in loc))
        return message

    return Request(request.scope, limited)


async def _generator_request(request: Request) -> GeneratorIn:
    body = await _capped(request, JSON_LIMIT, ["body"]).body()
    try:
        return GeneratorIn.model_validate_json(body)
    except ValidationError as exc:
        raise _body_errors(exc) from None


async def _upload_request(request: Request) -> Upload:
    limit = service.limit_bytes()
    capped = _capped(request, limit + FORM_SLACK, list(files.FILE))
    form = await capped.form(max_files=1, max_fields=10)
    try:
        uploads = form.getlist("file")
        fields: dict[str, Any] = {}
        for key, value in form.multi_items():
            if key == "file":
                continue
            if not isinstance(value, str):
                raise InvalidInput(f"{key!r} must be a plain form field", loc=["body", key])
            if key in fields:
                raise InvalidInput(f"{key!r} is given more than once", loc=["body", key])
            fields[key] = value
        try:
            parsed = UploadForm.model_validate(fields)
        except ValidationError as exc:
            raise _body_errors(exc) from None
        if len(uploads) != 1 or not isinstance(uploads[0], UploadFile):
            raise InvalidInput(
                "upload one file in the form field 'file' (.npz or .csv)",
                loc=list(files.FILE),
            )
        file = uploads[0]
        # Known before reading a byte of it: the form parser spooled it and counted.
        if file.size is not None:
            files.check_size(file.size, limit, "the upload")
        # Copied in chunks next to the datasets (counted again: 413 past the limit), never
        # read whole into memory.
        received = await run_in_threadpool(service.receive, file.file)
        return Upload(
            form=parsed,
            filename=file.filename or "",
            path=received.path,
            size=received.size,
            sha256=received.sha256,
        )
    finally:
        await form.close()


@router.get("", response_model=DatasetList)
async def list_datasets() -> DatasetList:
    """Built-in datasets (`builtin: true`) first, then uploaded and generated ones."""
    return await in_session(service.listing)


@router.get(
    "/{name}", response_model=DatasetOut, responses={404: {"description": "No such dataset"}}
)
async def get_dataset(name: str) -> DatasetOut:
    return await in_session(lambda s: service.get(s, name))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetOut,
    openapi_extra=_CREATE_DOC,
    responses={
        409: {"description": "The name is taken (a built-in or an existing dataset)"},
        413: {"description": "Larger than GLIDEPATH_MAX_UPLOAD_MB"},
        415: {
            "description": "Neither multipart/form-data nor application/json; or a file "
            "that is not .npz or .csv"
        },
        422: {"description": "Invalid dataset or parameters; `loc` names the field"},
    },
)
async def create_dataset(request: Request) -> DatasetOut:
    """Add a dataset. `multipart/form-data` uploads a file: fields `name`, `file` (.npz with
    arrays `x` and `y`, or .csv with a header row), `label_column` (.csv), optional `task`.
    `application/json` generates a seeded synthetic one: `{name, generator, n_samples,
    n_features, n_classes, noise, seed}`. Nothing is unpickled, ever."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        params = await _generator_request(request)
        return await in_session(lambda s: service.create_generated(s, params))
    if content_type == "multipart/form-data":
        upload = await _upload_request(request)
        try:
            return await in_session(lambda s: service.create_upload(s, upload))
        finally:
            upload.path.unlink(missing_ok=True)
    raise files.UnsupportedMediaType(
        f"unsupported content type {content_type or '(none)'!r}: send multipart/form-data "
        "(a file upload) or application/json (a generator)",
        loc=["header", "content-type"],
    )
