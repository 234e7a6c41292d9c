"""Bearer tokens: HS256 JWTs signed with the app's secret, as Supabase issues them. A request's
verified claims are handed to the database exactly as PostgREST does; the database decides."""
from __future__ import annotations

import time
import uuid
from typing import Any, Dict

import jwt

ALGORITHM = "HS256"
ROLE = "authenticated"
DEMO_NAMESPACE = uuid.UUID("6f1d3a52-8a0e-4c1b-9d51-3c1f2d0a7e11")


class Unauthorized(Exception):
    """No token, a bad signature, an expired token or claims that name no user."""


def demo_user_id(name: str) -> str:
    """A stable user id for a demo user's name (alice, bob, …)."""
    return str(uuid.uuid5(DEMO_NAMESPACE, name))


def issue(secret: str, name: str, ttl_seconds: int = 24 * 3600) -> str:
    """A token for the demo user `name` (the dev command prints one)."""
    now = int(time.time())
    claims = {"sub": demo_user_id(name), "role": ROLE, "aud": ROLE, "name": name, "iat": now, "exp": now + ttl_seconds}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify(secret: str, header: str | None) -> Dict[str, Any]:
    """The claims of a valid `Authorization: Bearer …` header."""
    if not header or not header.startswith("Bearer "):
        raise Unauthorized("missing bearer token")
    try:
        claims = jwt.decode(header[7:].strip(), secret, algorithms=[ALGORITHM], audience=ROLE,
                            options={"require": ["exp", "sub"]})
    except jwt.PyJWTError as e:
        raise Unauthorized(f"invalid token ({type(e).__name__})") from None
    try:
        uuid.UUID(str(claims["sub"]))
    except ValueError:
        raise Unauthorized("the token's subject is not a user id") from None
    if claims.get("role", ROLE) != ROLE:
        # the database role is always `authenticated`; a token asking for another is refused
        raise Unauthorized("the token asks for another role")
    return claims
