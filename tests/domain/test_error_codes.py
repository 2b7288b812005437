"""Every code a postback's error can carry is one a ledger filter takes."""

from __future__ import annotations

import ast
from pathlib import Path

import clickback
from clickback.domain import attribution, ledger, postback
from clickback.domain.models import ERROR_CODES

SRC = Path(clickback.__file__).parent
# a code handed on from another error (BodyError's, a stored one read back)
PASSED_ON = {"code", "e['code']"}


def test_every_code_given_a_field_error_is_one_a_filter_takes() -> None:
    given: set[str] = set()
    named = {
        "DUPLICATE_ORDERNUMBER": attribution.DUPLICATE_ORDERNUMBER,
        "UNKNOWN_COMMISSIONID": attribution.UNKNOWN_COMMISSIONID,
        "MISSING_RATE": attribution.MISSING_RATE,
        "THOUSANDS_LIKE": attribution.THOUSANDS_LIKE,
        "TOO_LARGE": ledger.TOO_LARGE,
        "UNSUPPORTED_ENCODING": postback.UNSUPPORTED_ENCODING,
    }
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") in (
                "FieldError",
                "BodyError",
            ):
                code = node.args[1] if node.func.id == "FieldError" else node.args[0]  # type: ignore[attr-defined]
                if isinstance(code, ast.Constant):
                    given.add(code.value)
                elif ast.unparse(code) not in PASSED_ON:
                    given.add(named[ast.unparse(code).rsplit(".", 1)[-1]])
    assert len(given) > 25  # the scan found the codes
    assert given <= set(ERROR_CODES), sorted(given - set(ERROR_CODES))
    assert set(named.values()) <= set(ERROR_CODES)
