"""`make token USER=alice [ADMIN=1] [EMAIL=a@example.com] [TIER=premium]`: a token for any local user,
signed with the running runtime's key (`email` lets a create ask for `notifyEmail`; `tier: premium` goes
first for a Gemini job slot).

The runtime writes the key it signs with to `jwt-secret` in `LOCAL_DATA_DIR` (default `.local-data/`)
when it starts. With the kept state (the default, see `local.persistence`) it reuses that key at the
next start, so tokens stay valid across restarts until they expire (24 h by default, `--hours`), as
the batches and balances they refer to do; with `LOCAL_PERSIST=0` each start has a new key (unless
`JWT_SECRET` is set), so tokens are valid until the runtime restarts.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from batchgen import constants

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[1] / ".local-data"


def data_dir(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    return Path(environ.get("LOCAL_DATA_DIR", "").strip() or DEFAULT_DATA_DIR)


def secret_file(environ: Mapping[str, str] | None = None) -> Path:
    return data_dir(environ) / "jwt-secret"


def saved_secret(environ: Mapping[str, str] | None = None) -> str | None:
    """The key a previous run left in the data directory, if any."""
    try:
        return secret_file(environ).read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def save_secret(secret: str) -> None:
    path = secret_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(secret, encoding="utf-8")


def load_secret() -> str | None:
    if os.environ.get(constants.ENV_JWT_SECRET):
        return os.environ[constants.ENV_JWT_SECRET]
    return saved_secret()


def main(argv: list[str] | None = None) -> int:
    from local.runtime import TOKEN_LIFETIME_SECONDS, mint_token

    parser = argparse.ArgumentParser(prog="make token", description="Mint a token for a local user.")
    parser.add_argument("user", help="the user id (the token's `sub`)")
    parser.add_argument("--admin", action="store_true", help="an admin account (role 'admin')")
    parser.add_argument("--email", default=None, help="the token's `email` claim (for notifyEmail)")
    parser.add_argument("--tier", default=None, help="the token's `tier` claim (`premium` goes first)")
    parser.add_argument("--hours", type=float, default=TOKEN_LIFETIME_SECONDS / 3600, help="lifetime (24)")
    args = parser.parse_args(argv)
    if not args.user.strip():
        parser.error("the user id must not be empty")
    secret = load_secret()
    if secret is None:
        print("No signing key yet: start the runtime with `make run` first (or set JWT_SECRET).", file=sys.stderr)
        return 2
    extra = {name: value for name, value in (("email", args.email), ("tier", args.tier)) if value}
    role = "admin" if args.admin else None
    print(mint_token(secret, args.user.strip(), role=role, lifetime=int(args.hours * 3600), claims=extra))
    return 0


if __name__ == "__main__":
    sys.exit(main())
