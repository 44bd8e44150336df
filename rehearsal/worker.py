"""One deployed function's execution environment: the real handler, in its own process, with exactly the
environment the rehearsal gives it (the template's variables, its role's credentials, Lambda's own).

Protocol: one JSON event per line on stdin, one JSON answer per line on the descriptor the parent names;
everything the function prints goes to stderr, as Lambda sends it to the log group.
"""

from __future__ import annotations

import json
import os
import sys
import traceback


def main() -> None:
    handler_path, answers_fd, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    answers = os.fdopen(answers_fd, "w")
    os.dup2(2, 1)  # the function's prints and Powertools' log lines: stderr

    from local.invoke import LambdaContext, load_handler

    handler = load_handler(handler_path)
    if handler is None:
        raise SystemExit(f"no handler {handler_path}")
    name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
    memory = int(os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"])
    for line in sys.stdin:
        event = json.loads(line)
        try:
            answer = {"result": handler(event, LambdaContext(name, memory, timeout))}
        except Exception as exc:  # reported to the rehearsal, which fails the step
            answer = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}
        answers.write(json.dumps(answer, default=str) + "\n")
        answers.flush()


if __name__ == "__main__":
    main()
