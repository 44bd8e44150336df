"""`python -m local.openapi_document [FILE]`: the API's OpenAPI document as the api function serves it
at `/openapi.json`, without a running service (the TypeScript client's types are generated from it)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def served_document() -> dict[str, object]:
    """GET /openapi.json through the real api handler, in-process (a public route: no AWS, no token)."""
    from batchgen.handlers.api import lambda_handler
    from local.apigw import proxy_event
    from local.invoke import LambdaContext

    answer = lambda_handler(proxy_event("GET", "/openapi.json"), LambdaContext("batchgen-api", 256, 29))
    document: dict[str, object] = json.loads(answer["body"])
    return document


def main(argv: list[str]) -> int:
    text = json.dumps(served_document(), indent=2) + "\n"
    if argv:
        Path(argv[0]).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
