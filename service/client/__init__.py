"""A typed Python client of the Glidepath API (`Client`), its errors (`ApiError`) and the
submit-file loader the CLI uses (`load_submission`). See docs/cli.md."""

from service.client.errors import ApiError, ConnectionFailed
from service.client.files import FileError, Submission, classify, load_submission
from service.client.http import DEFAULT_URL, Client
from service.client.types import FINAL_STATUSES, OK_STATUSES

__all__ = [
    "DEFAULT_URL",
    "FINAL_STATUSES",
    "OK_STATUSES",
    "ApiError",
    "Client",
    "ConnectionFailed",
    "FileError",
    "Submission",
    "classify",
    "load_submission",
]
