import time

import jwt
import pytest

from batchgen.auth import authenticate, extract_token
from batchgen.config import Settings
from batchgen.domain.errors import Unauthorized

SECRET = "unit-secret-unit-secret-unit-secret!!"


def settings(**overrides):
    return Settings(jwt_secret=SECRET, **overrides)


def token(payload=None, key=SECRET, alg="HS256", **claims):
    body = {"sub": "u1", "exp": int(time.time()) + 60, **claims} if payload is None else payload
    return jwt.encode(body, key, algorithm=alg)


def headers(value):
    return {"Authorization": f"Bearer {value}"}


def test_valid_token_gives_the_user_and_admin_role(monkeypatch):
    monkeypatch.setenv("JWT_SECRET", SECRET)
    from batchgen.config import reset_caches

    reset_caches()
    assert authenticate(headers(token()), settings()).user_id == "u1"
    assert authenticate(headers(token(role="admin")), settings()).is_admin
    assert not authenticate(headers(token(role="user")), settings()).is_admin


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(lambda: token(exp=int(time.time()) - 10), id="expired"),
        pytest.param(lambda: token(key="another-secret-another-secret-12345"), id="bad-signature"),
        pytest.param(lambda: token(payload={"sub": "u1"}), id="no-exp"),
        pytest.param(lambda: token(payload={"exp": int(time.time()) + 60}), id="no-sub"),
        pytest.param(
            lambda: jwt.encode({"sub": "u1", "exp": int(time.time()) + 60}, None, algorithm="none"),
            id="alg-none",
        ),
        pytest.param(
            lambda: token(alg="HS512"),  # signed with the right key: only the algorithm is wrong
            id="algorithm-not-pinned",
            marks=pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
        ),
        pytest.param(lambda: "not.a.jwt", id="garbage"),
    ],
)
def test_rejected_tokens(monkeypatch, bad):
    monkeypatch.setenv("JWT_SECRET", SECRET)
    from batchgen.config import reset_caches

    reset_caches()
    with pytest.raises(Unauthorized):
        authenticate(headers(bad()), settings())


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"exp": str(int(time.time()) + 600)}, id="exp-string"),
        pytest.param({"exp": f"{int(time.time()) + 600}.5"}, id="exp-decimal-string"),
        pytest.param({"exp": True}, id="exp-boolean"),
        pytest.param({"exp": [int(time.time()) + 600]}, id="exp-list"),
        pytest.param({"nbf": str(int(time.time()) - 60)}, id="nbf-string"),
        pytest.param({"iat": str(int(time.time()) - 60)}, id="iat-string"),
        pytest.param({"iat": None}, id="iat-null"),
    ],
)
def test_date_claims_must_be_numbers(monkeypatch, claims):
    """RFC 7519 NumericDate: a JSON number. A string PyJWT would convert with int() is refused (401)."""
    monkeypatch.setenv("JWT_SECRET", SECRET)
    from batchgen.config import reset_caches

    reset_caches()
    with pytest.raises(Unauthorized):
        authenticate(headers(token(**claims)), settings())


def test_numeric_date_claims_are_accepted_as_integers_and_fractions(monkeypatch):
    monkeypatch.setenv("JWT_SECRET", SECRET)
    from batchgen.config import reset_caches

    reset_caches()
    now = time.time()
    accepted = token(exp=now + 600.5, nbf=int(now) - 60, iat=now - 1.25)
    assert authenticate(headers(accepted), settings()).user_id == "u1"


def test_issuer_and_audience_are_enforced_when_configured(monkeypatch):
    monkeypatch.setenv("JWT_SECRET", SECRET)
    from batchgen.config import reset_caches

    reset_caches()
    strict = settings(jwt_issuer="https://issuer", jwt_audience="batch-api")
    assert authenticate(headers(token(iss="https://issuer", aud="batch-api")), strict).user_id == "u1"
    with pytest.raises(Unauthorized):
        authenticate(headers(token(iss="https://other", aud="batch-api")), strict)
    with pytest.raises(Unauthorized):
        authenticate(headers(token(iss="https://issuer")), strict)


def test_missing_token_and_cookie_fallback():
    with pytest.raises(Unauthorized):
        authenticate({}, settings())
    assert extract_token({"cookie": "a=1; session=abc.def.ghi"}, "session") == "abc.def.ghi"
    assert extract_token({"authorization": "Basic xyz"}, "session") is None


def test_the_missing_token_message_names_the_cookie_to_a_browser():
    # A browser (it sends cookies) is told about the session cookie, not only the header
    with pytest.raises(Unauthorized) as from_browser:
        authenticate({"Cookie": "theme=dark"}, settings(auth_cookie_name="telegram_session"))
    assert "'telegram_session' cookie" in from_browser.value.message
    assert from_browser.value.message.startswith("Sign in first: no 'telegram_session' cookie")
    # An API client is told about the header first, and the cookie too
    with pytest.raises(Unauthorized) as from_client:
        authenticate({}, settings())
    assert from_client.value.message.startswith("Sign in first: send 'Authorization: Bearer <token>'")
    assert "'session' cookie" in from_client.value.message
