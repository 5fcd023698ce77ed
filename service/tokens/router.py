"""/v1/tokens: admins make, list and revoke tokens; any valid token may ask who it is."""

from __future__ import annotations

from fastapi import APIRouter, status

from service.kit.auth import AuthDep, CallerDep
from service.kit.deps import in_session
from service.kit.logging import get_logger
from service.tokens import service
from service.tokens.schemas import Me, TokenCreated, TokenIn, TokenList, TokenOut

router = APIRouter(prefix="/v1/tokens", tags=["tokens"])
log = get_logger(__name__)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=TokenCreated,
    responses={409: {"description": "The name is taken (names are never reused)"}},
)
async def create_token(request: TokenIn, auth: AuthDep, caller: CallerDep) -> TokenCreated:
    """Make a token; the answer is the only place the token itself is ever shown."""
    created = await in_session(lambda s: service.create(s, request))
    auth.forget()  # committed: the first token closes an open API at once, in this process
    # Who made it: an audit line (the CLI's `glidepath token` prints its own).
    log.info("token_created", token_name=created.name, role=created.role.value, by=caller.name)
    return created


@router.get("", response_model=TokenList)
async def list_tokens() -> TokenList:
    """Every token, revoked ones included, without secrets."""
    return await in_session(service.list_all)


@router.get("/me", response_model=Me)
async def who_am_i(caller: CallerDep) -> Me:
    """The caller's token name and role (readable with any valid token)."""
    return Me(name=caller.name, role=caller.role)


@router.delete(
    "/{name}", response_model=TokenOut, responses={404: {"description": "No such token"}}
)
async def revoke_token(name: str, auth: AuthDep, caller: CallerDep) -> TokenOut:
    """Revoke a token: refused at once by this process, within a second by the others."""
    revoked = await in_session(lambda s: service.revoke(s, name))
    auth.forget()  # committed: refused from now on
    log.info("token_revoked", token_name=name, by=caller.name)
    return revoked
