"""`/docs`: Swagger UI served from the vendored swagger-ui-dist (`static/vendor/swagger-ui/`),
so the page works without a network (FastAPI's own `/docs` loads it from a CDN, which the
Content-Security-Policy and an offline machine both refuse). ReDoc is off: it would need a CDN
too. FastAPI's page starts Swagger UI with an inline script; this page's policy allows that one
script by its hash and nothing else inline (kit/security_headers.py)."""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html, swagger_ui_default_parameters
from fastapi.responses import HTMLResponse

from service.kit.security_headers import content_security_policy

VENDOR = "/static/vendor/swagger-ui"
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)

router = APIRouter(include_in_schema=False)


@cache
def page(openapi_url: str, title: str) -> tuple[bytes, str]:
    """The page's HTML and its Content-Security-Policy."""
    html = get_swagger_ui_html(
        openapi_url=openapi_url,
        title=title,
        swagger_js_url=f"{VENDOR}/swagger-ui-bundle.js",
        swagger_css_url=f"{VENDOR}/swagger-ui.css",
        swagger_favicon_url="data:,",  # an empty icon: no request for one
        # No badge from the online validator (an image from another host).
        swagger_ui_parameters={**swagger_ui_default_parameters, "validatorUrl": None},
    ).body
    html = bytes(html)
    hashes = [
        f"'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'"
        for script in _INLINE_SCRIPT.findall(html)
    ]
    return html, content_security_policy(script_src=["'self'", *hashes])


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    html, policy = page(request.app.openapi_url or "/openapi.json", f"{request.app.title} API")
    return HTMLResponse(
        html, headers={"Content-Security-Policy": policy, "Cache-Control": "no-cache"}
    )
