"""The AWS CDK stack of the batch image-generation service.

`stack.py` composes one construct per capability (data, queues, secrets,
functions, api, schedule, monitoring). Every name and limit comes from
`batchgen.constants`, the module the Lambda handlers and the local runtime read
too. That package lives in `functions/` (the Lambda code asset root) and is not
installed, so `functions/` is put on `sys.path` here, once, for every importer
of `infra` (app.py, the tests).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = REPO_ROOT / "functions"
PYPROJECT = REPO_ROOT / "pyproject.toml"
CDK_JSON = REPO_ROOT / "cdk.json"
BUILD_DIR = REPO_ROOT / "build" / "lambda"

if str(FUNCTIONS_DIR) not in sys.path:
    sys.path.insert(0, str(FUNCTIONS_DIR))


def pascal_case(name: str) -> str:
    """Construct ids from the constants' names: "batchgen-submit" -> "BatchgenSubmit"."""
    return "".join(part[:1].upper() + part[1:] for part in name.replace("_", "-").split("-") if part)
