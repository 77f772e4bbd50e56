"""Registry of report formats: detected name -> parser function (imported lazily)."""

from __future__ import annotations

import importlib

from ci_app.artifacts.base import Parser

# format name -> "module:function" within ci_app.artifacts
_PARSERS: dict[str, str] = {
    "junit": "junit:parse_junit",
    "nunit2": "nunit:parse_nunit2",
    "nunit3": "nunit:parse_nunit3",
    "xunit1": "xunit:parse_xunit1",
    "xunit2": "xunit:parse_xunit2",
    "trx": "trx:parse_trx",
    "mocha-json": "mocha:parse_mocha_json",
    "jest-json": "jestjson:parse_jest_json",
    "dart-json": "dart:parse_dart_json",
    "go-test-json": "gotest:parse_go_test_json",
    "rspec-json": "rspec:parse_rspec_json",
    "tap": "tap:parse_tap",
    "ctrf-json": "ctrf:parse_ctrf_json",
    "ci-fanout": "resultset:parse_resultset_json",
}

FORMATS: tuple[str, ...] = tuple(_PARSERS)


def get_parser(fmt: str) -> Parser:
    """The parser for ``fmt``; KeyError with the known names when unknown."""
    try:
        target = _PARSERS[fmt]
    except KeyError:
        raise KeyError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}") from None
    module_name, func_name = target.split(":")
    module = importlib.import_module(f"ci_app.artifacts.{module_name}")
    parser: Parser = getattr(module, func_name)
    return parser
