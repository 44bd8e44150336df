"""JWT authentication: algorithms pinned by configuration, never taken from the token."""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import jwt

from batchgen.config import Settings, get_settings
from batchgen.domain.batches import Principal
from batchgen.domain.errors import Unauthorized
from batchgen.secret_values import jwt_secret

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
# RFC 7519 NumericDate claims: JSON numbers. PyJWT converts them with int(), so "exp": "1999999999" (a
# string) would pass its own check; the service refuses anything but a finite number.
NUMERIC_DATE_CLAIMS = ("exp", "nbf", "iat")


@lru_cache(maxsize=4)
def _jwks_client(url: str) -> jwt.PyJWKClient:
    return jwt.PyJWKClient(url, cache_keys=True, lifespan=300)


def _verification_key(token: str, settings: Settings) -> Any:
    algorithms = settings.allowed_algorithms
    if settings.jwt_jwks_url and not HMAC_ALGORITHMS.issuperset(algorithms):
        return _jwks_client(settings.jwt_jwks_url).get_signing_key_from_jwt(token).key
    return jwt_secret()


def _bearer(lowered: dict[str, str]) -> str | None:
    scheme, _, credentials = lowered.get("authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" and credentials.strip() else None


def extract_token(headers: dict[str, str], cookie_name: str) -> str | None:
    """`Authorization: Bearer` first; the seed-003 browser client sends a session cookie instead."""
    lowered = {key.lower(): value for key, value in headers.items()}
    bearer = _bearer(lowered)
    if bearer is not None:
        return bearer
    for part in lowered.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == cookie_name and value:
            return value
    return None


def by_cookie(headers: dict[str, str]) -> bool:
    """Whether a request's token came from the session cookie (no `Authorization: Bearer`): a browser
    adds the cookie to any request to the API, including one another site's page makes (CSRF)."""
    return _bearer({key.lower(): value for key, value in headers.items()}) is None


def _check_numeric_dates(claims: dict[str, Any]) -> None:
    for name in NUMERIC_DATE_CLAIMS:
        value = claims.get(name)
        if name in claims and (
            isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
        ):
            raise Unauthorized(f"The token's '{name}' claim is not a number (a NumericDate); sign in again.")


def missing_token_message(headers: dict[str, str], cookie_name: str) -> str:
    """A browser (it sends cookies) signs in with the session cookie; an API client with the header."""
    if any(key.lower() == "cookie" for key in headers):
        return (
            f"Sign in first: no '{cookie_name}' cookie with a token came with the request "
            "(an API client sends 'Authorization: Bearer <token>' instead)."
        )
    return f"Sign in first: send 'Authorization: Bearer <token>' (or the token in the '{cookie_name}' cookie)."


def authenticate(headers: dict[str, str], settings: Settings | None = None) -> Principal:
    settings = settings or get_settings()
    token = extract_token(headers, settings.auth_cookie_name)
    if token is None:
        raise Unauthorized(missing_token_message(headers, settings.auth_cookie_name))
    try:
        claims = jwt.decode(
            token,
            key=_verification_key(token, settings),
            algorithms=settings.allowed_algorithms,
            issuer=settings.jwt_issuer or None,
            audience=settings.jwt_audience or None,
            options={"require": ["sub", "exp"], "verify_aud": bool(settings.jwt_audience)},
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("Your token has expired; sign in again.") from exc
    except (jwt.InvalidTokenError, jwt.PyJWKClientError) as exc:
        raise Unauthorized("The token is not valid; sign in again.") from exc
    _check_numeric_dates(claims)
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject.strip():
        raise Unauthorized("The token names no user; sign in again.")
    tier, email = claims.get("tier"), claims.get("email")
    return Principal(
        user_id=subject,
        is_admin=claims.get("role") == "admin",
        email=email if isinstance(email, str) and email.strip() else None,
        tier=tier if isinstance(tier, str) else None,
    )
