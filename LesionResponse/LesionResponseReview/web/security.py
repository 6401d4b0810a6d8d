"""Access to the review server: loopback binds are open to the local user; any other bind requires a token,
and every HTTP or WebSocket request without it is refused (403).

The reader opens ``http://HOST:PORT/?token=T``; the first request sets the token as an HttpOnly, SameSite=Strict
cookie, so the page's own requests (scripts, the WebSocket) carry it. Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import socket
from typing import Any

COOKIE = "lesion_response_review_token"
TOKEN_BYTES = 24  # 192 bits of randomness (secrets.token_urlsafe)


def is_loopback(host: str) -> bool:
    """True when ``host`` (name or address) only accepts connections from this machine."""
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None))
        except OSError:
            return False


def resolve_token(host: str, token: str | None) -> str | None:
    """The token to require: the given one, a new random one for a non-loopback bind, else None (open)."""
    if token:
        return token
    return None if is_loopback(host) else secrets.token_urlsafe(TOKEN_BYTES)


def token_middleware(token: str) -> Any:
    """aiohttp middleware refusing requests whose ``?token=`` or cookie is not ``token``."""
    from aiohttp import web

    @web.middleware
    async def require_token(request: web.Request, handler: Any) -> web.StreamResponse:
        given = request.query.get("token") or request.cookies.get(COOKIE) or ""
        if not hmac.compare_digest(given.encode(), token.encode()):
            return web.Response(status=403, text="LesionResponse review: this server needs its access token "
                                                 "(open the URL printed when it started, with ?token=...).\n")
        response = await handler(request)
        if request.query.get("token") and not response.prepared:
            response.set_cookie(COOKIE, token, httponly=True, samesite="Strict")
        return response

    return require_token


def protect(server: Any, token: str) -> None:
    """Install the token check on a trame server before it starts listening."""
    def bind(wslink_server: Any) -> None:
        wslink_server.app.middlewares.append(token_middleware(token))

    server.controller.on_server_bind.add(bind)
