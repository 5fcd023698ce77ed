"""The roles a token carries and what each request needs (CONTRACT.md, "Live events, metrics,
access"). Pure: no web or database import, so the tokens table, the CLI and the guard share it."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    READ = "read"  # every GET (and /metrics, the event streams)
    SUBMIT = "submit"  # also create runs, batches, sweeps, range tests, datasets; previews; cancel
    ADMIN = "admin"  # also tokens

    def covers(self, needed: Role) -> bool:
        return _RANK[self] >= _RANK[needed]


_RANK = {Role.READ: 0, Role.SUBMIT: 1, Role.ADMIN: 2}
ROLES = tuple(Role)

# Reads need `read`; every other method changes something and needs `submit`, except where a rule
# below says otherwise. Rules are (method or "*", path, role), the first match wins; a path
# matches itself and what lies under it.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
RULES: tuple[tuple[str, str, Role], ...] = (
    ("GET", "/v1/tokens/me", Role.READ),  # any valid token may ask who it is
    ("*", "/v1/tokens", Role.ADMIN),
    # A preview changes nothing, but it is a POST that costs CPU: for those who may submit.
    ("POST", "/v1/schedules/preview", Role.SUBMIT),
)


def needed_role(method: str, path: str) -> Role:
    method = method.upper()
    for rule_method, prefix, role in RULES:
        if rule_method in ("*", method) and (path == prefix or path.startswith(prefix + "/")):
            return role
    return Role.READ if method in READ_METHODS else Role.SUBMIT
