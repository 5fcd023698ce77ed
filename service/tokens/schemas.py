"""Request and response bodies of /v1/tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from service.kit.roles import Role
from service.kit.time import as_utc

# Letters, digits and . _ - @, starting with a letter or digit: safe in a shell, a URL path and
# a log line. No colon, so no table token can be named like an env token (`env:1`).
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]*$"
Name = Annotated[str, Field(min_length=1, max_length=100, pattern=NAME_PATTERN)]


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = Field(description="Unique, forever: recorded as `created_by` on what it makes")
    role: Role = Field(description="read: every GET; submit: also create and cancel; admin: "
                       "also tokens")  # fmt: skip


class TokenCreated(BaseModel):
    name: str
    role: Role
    token: str = Field(description="The token itself, shown this once; only its sha256 is kept")


class TokenOut(BaseModel):
    name: str
    role: Role
    created_at: datetime
    last_used_at: datetime | None = Field(description="updated at most once a minute")
    revoked: bool
    revoked_at: datetime | None

    @field_serializer("created_at", "last_used_at", "revoked_at")
    def _times(self, dt: datetime | None) -> datetime | None:
        return as_utc(dt)


class TokenList(BaseModel):
    items: list[TokenOut]


class Me(BaseModel):
    name: str | None = Field(description="the token's name; null while the API is open")
    role: Role = Field(description="what the caller may do (admin while the API is open)")
