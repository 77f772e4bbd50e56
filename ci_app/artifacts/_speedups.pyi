from collections.abc import Callable, Mapping
from typing import Any

from ci_app.model.results import Outcome, TestCase

_Declared = tuple[str | None, str | None, str | None, str | None, str | None, str | None]

class FallbackError(Exception): ...

class JUnitParser:
    def __init__(self, clip: Callable[[str | None], str | None]) -> None: ...
    def feed(self, data: bytes, final: bool = ...) -> list[TestCase]: ...
    @property
    def declared(self) -> list[_Declared]: ...

def configure(
    case_type: type[TestCase],
    outcomes: tuple[Outcome, Outcome, Outcome, Outcome],
    rules: Mapping[str, Any],
    line_fn: Callable[[str | None, bool], int | None],
    duration_fn: Callable[[str | None], float],
    prefix_fn: Callable[[str | None, str | None], str | None],
    module_fn: Callable[[str, str | None], str],
    merge_fn: Callable[[TestCase, TestCase], TestCase],
    case_to_json: Callable[[TestCase], str],
) -> None: ...
def encode_cases(
    cases: list[TestCase], duration: float
) -> tuple[bytes, int, int, int, int, int, float]: ...
