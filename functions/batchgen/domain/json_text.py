"""Reading a JSON request body with bounded numbers.

Python converts an integer literal of more than 4,300 digits with a ValueError (its guard against
quadratic-time conversion), which a handler would answer with a 500; and no field of this API holds a
number of hundreds of digits. So every number literal is measured before it is converted: one of more
than `MAX_JSON_NUMBER_DIGITS` digits is a 400 naming the limit. `NaN` and `Infinity`, which Python's
parser accepts but JSON does not have, are refused too.
"""

from __future__ import annotations

import json
from typing import Any

from batchgen import constants
from batchgen.domain.errors import InvalidInput


class NumberTooLong(InvalidInput):
    def __init__(self, literal: str) -> None:
        limit = constants.MAX_JSON_NUMBER_DIGITS
        super().__init__(
            f"The request body holds a number of {len(literal):,} characters; numbers have at most {limit} digits.",
            [{"loc": ["body"], "msg": f"a number longer than {limit} digits", "type": "number_too_long"}],
        )


def _digits(literal: str) -> int:
    return sum(character.isdigit() for character in literal)


def _integer(literal: str) -> int:
    if len(literal) > constants.MAX_JSON_NUMBER_DIGITS and _digits(literal) > constants.MAX_JSON_NUMBER_DIGITS:
        raise NumberTooLong(literal)
    return int(literal)


def _fraction(literal: str) -> float:
    if len(literal) > constants.MAX_JSON_NUMBER_DIGITS and _digits(literal) > constants.MAX_JSON_NUMBER_DIGITS:
        raise NumberTooLong(literal)
    return float(literal)


def _not_json(name: str) -> Any:
    raise InvalidInput(f"The request body is not valid JSON: {name} is not a JSON number.")


def loads(text: str | bytes | bytearray) -> Any:
    """`json.loads`, with number literals measured before they are converted (see the module's docstring).
    Malformed JSON still raises `json.JSONDecodeError`, which the caller answers as it did."""
    return json.loads(text, parse_int=_integer, parse_float=_fraction, parse_constant=_not_json)
