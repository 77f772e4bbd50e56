"""The JUnit rulebook: every dialect rule, written once, as data (plus the id rules).

Both JUnit readers take their rules from here: the lxml reference reader
(``junit.py``) reads these tables directly, and the native expat reader
(``_speedups.c``) is handed them by ``native.configure`` (``RULES``), so a tag
name or a status word is defined nowhere else. A dialect policy the native reader
does not implement is listed in ``NATIVE_HANDS_OVER``: when it meets one, it
hands the file to the reference reader.

Dialects (``docs/formats.md`` has each rule with the runner's own summary):

* **pytest** — a ``<testsuite name="pytest">`` (or any element named
  ``pytest tests``): ids are pytest node ids; 0-based ``line``; consecutive
  duplicates are pytest-rerunfailures attempts, merged into one case.
* **go** (gotestsum, go-junit-report) — a suite whose ``<properties>`` hold
  ``go.version``: Go test names are unique in a package, so a repeated name is a
  rerun (``gotestsum --rerun-fails``): one case, the last attempt's outcome,
  ``retries``, ``flaky`` when it ended passing.
* **node** (``node --test --test-reporter=junit``) — a test with subtests is
  written as a ``<testsuite>`` (``disabled``/``hostname`` attributes, no
  ``timestamp``): node counts it as a test, failed when a subtest failed, so it
  becomes a case too.
* everything else — repeated names are distinct tests (data-driven titles): ids
  get ``#2``, ``#3``.

Declared counts a leaf suite's listed cases do not reach (libtest writes no
``<testcase>`` for an ``#[ignore]``d test, only ``skipped="N"``) become skipped
placeholder cases, so the totals match the runner's ``test result:`` line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ci_app.artifacts.base import to_float
from ci_app.model.results import Outcome, TestCase

# -- elements -----------------------------------------------------------------------------
CASE_TAG = "testcase"
SUITE_TAG = "testsuite"
SUITES_TAG = "testsuites"  # the root our export writes (readers accept any root)
#: Result children of a case; the most severe wins (error > failure > passed > skipped).
RESULT_TAGS: Mapping[str, Outcome] = {
    "failure": Outcome.FAILED,
    "error": Outcome.ERROR,
    "skipped": Outcome.SKIPPED,
}
#: Surefire/Gradle rerun children: each is one extra attempt (flaky* = it passed at last).
RETRY_TAGS: frozenset[str] = frozenset({"flakyFailure", "flakyError", "rerunFailure", "rerunError"})
#: Inside a retry child, the text of this child (else the retry's own text) is the detail.
RETRY_TRACE_TAG = "stackTrace"
#: What our JUnit export writes for each outcome (the inverse of ``RESULT_TAGS``) and
#: for the earlier attempts of a rerun case (flaky: passed at last; else failed each time).
EXPORT_RESULT_TAGS: Mapping[Outcome, str] = {v: k for k, v in RESULT_TAGS.items()}
EXPORT_RETRY_TAGS: tuple[str, str] = ("flakyFailure", "rerunFailure")
STDOUT_TAG = "system-out"
STDERR_TAG = "system-err"
PROPERTY_TAG = "property"

# -- attributes (first alias present and non-empty wins) -------------------------------
CASE_ATTRIBUTES: Mapping[str, tuple[str, ...]] = {
    "name": ("name",),
    "classname": ("classname", "class"),
    "file": ("file",),
    "line": ("line",),
    "time": ("time", "duration"),
    "status": ("status", "result"),
    "failure": ("failure",),  # a failure message as an attribute (node)
    "error": ("error",),
}
MESSAGE_ATTRIBUTE = "message"
SUITE_NAME_ATTRIBUTE = "name"
SUITE_FILE_ATTRIBUTES: tuple[str, ...] = ("file", "filepath")
#: A suite's declared counts, in this order (``disabled`` adds to skipped).
DECLARED_ATTRIBUTES: tuple[str, ...] = (
    "tests",
    "failures",
    "errors",
    "skipped",
    "disabled",
    "time",
)

# -- status words (``status``/``result`` attributes, compared lower-case) ------------------
STATUS_OUTCOMES: Mapping[str, Outcome] = {
    **dict.fromkeys(
        ("disabled", "skipped", "skip", "notrun", "not run", "ignored", "pending"), Outcome.SKIPPED
    ),
    **dict.fromkeys(("failed", "failure", "fail"), Outcome.FAILED),
    "error": Outcome.ERROR,
}
SKIP_STATUS = frozenset(k for k, v in STATUS_OUTCOMES.items() if v is Outcome.SKIPPED)

# -- dialects ------------------------------------------------------------------------------
PYTEST_SUITE_NAME = "pytest"  # a <testsuite> with this name …
PYTEST_ANY_NAME = "pytest tests"  # … or any element with this one (pytest >= 5.1's root)
GO_PROPERTY = "go.version"  # gotestsum / go-junit-report write it in <properties>
#: node's reporter marks a test-with-subtests <testsuite> with these and no timestamp.
NODE_SUITE_ATTRIBUTES: tuple[str, ...] = ("disabled", "hostname")
NODE_SUITE_ABSENT = "timestamp"
NODE_CASE_CLASSNAME = "test"

#: Rerun policy per dialect: "consecutive" merges a case into the one just before it
#: when the ids are equal; "any" merges every repeat of an id within the suite;
#: "number" keeps repeats as distinct tests (``#2``, ``#3``).
RERUN_POLICY: Mapping[str, str] = {"pytest": "consecutive", "go": "any", "node": "number"}
DEFAULT_RERUN_POLICY = "number"

#: At most this many placeholders per suite: a declared count is only a claim, and a
#: hostile ``tests="1000000000"`` must not become a billion cases.
MAX_UNLISTED_SKIPPED = 1000
UNLISTED_SKIPPED_NAME = "(skipped test not listed in the report)"
UNLISTED_SKIPPED_MESSAGE = (
    "the report declares this skipped test but does not list it "
    "(libtest writes no <testcase> for an #[ignore]d test)"
)

#: Dialect policies the native reader does not mirror: it hands such files over.
NATIVE_HANDS_OVER = ("go", "node", "unlisted-skipped")

#: What ``native.configure`` hands the C reader (tag and attribute tables).
RULES: Mapping[str, Any] = {
    "case_tag": CASE_TAG,
    "suite_tag": SUITE_TAG,
    "result_tags": dict(RESULT_TAGS),
    "retry_tags": tuple(sorted(RETRY_TAGS)),
    "retry_trace_tag": RETRY_TRACE_TAG,
    "stdout_tag": STDOUT_TAG,
    "stderr_tag": STDERR_TAG,
    "property_tag": PROPERTY_TAG,
    "case_attributes": dict(CASE_ATTRIBUTES),
    "message_attribute": MESSAGE_ATTRIBUTE,
    "suite_name_attribute": SUITE_NAME_ATTRIBUTE,
    "suite_file_attributes": SUITE_FILE_ATTRIBUTES,
    "declared_attributes": DECLARED_ATTRIBUTES,
    "status_outcomes": dict(STATUS_OUTCOMES),
    "pytest_suite_name": PYTEST_SUITE_NAME,
    "pytest_any_name": PYTEST_ANY_NAME,
    "go_property": GO_PROPERTY,
    "node_suite_attributes": NODE_SUITE_ATTRIBUTES,
    "node_suite_absent": NODE_SUITE_ABSENT,
}


# -- values ---------------------------------------------------------------------------------
def parse_duration(value: str | None) -> float:
    if not value:
        return 0.0
    try:
        return float(value)
    except ValueError:
        return to_float(value)


def parse_line(value: str | None, zero_based: bool = False) -> int | None:
    """Line number; pytest writes 0-based lines (its ``item.location``), others 1-based."""
    if value is None:
        return None
    try:
        return int(value) + 1 if zero_based else int(value)
    except ValueError:
        return None


# -- pytest node ids ------------------------------------------------------------------------
def _is_test_module(part: str) -> bool:
    """pytest's default ``python_files`` (``test_*.py``, ``*_test.py``)."""
    return part.startswith("test_") or part.endswith("_test")


def pytest_node_prefix(classname: str | None, file: str | None = None) -> str | None:
    """The node id up to the test name (``tests/Peer/test_x.py::T``); None for none.

    pytest writes ``classname`` as the node id's module path with ``/`` made ``.``
    and ``.py`` dropped, then the classes. With the ``file`` attribute (xunit1,
    legacy) the module part is exact. Without it (xunit2, pytest's default), the
    module is the last dotted part that is a test module (``test_*``/``*_test``);
    when none is (doctests, custom ``python_files``), the whole classname is the
    module. Directory names are never taken for classes (``tests.Peer.test_x.T``).
    Depends on the classname and file only, so it is computed once per class.
    """
    if not classname:
        return file or None
    parts = classname.split(".")
    if file and file.endswith(".py"):
        module = file[:-3].replace("\\", "/").split("/")
        if parts[: len(module)] == module:
            return "::".join([file.replace("\\", "/"), *parts[len(module) :]])
    split = len(parts)
    for i in range(len(parts) - 1, -1, -1):
        if _is_test_module(parts[i]):
            split = i + 1
            break
    path = "/".join(parts[:split]) + ".py"
    return "::".join([path, *parts[split:]])


def pytest_module_id(name: str, file: str | None = None) -> str:
    """The node id of a case pytest wrote without a classname: a whole module's report
    (a module-level skip, a collection error), named as a dotted module path."""
    if file:
        return file.replace("\\", "/")
    return name.replace(".", "/") + ".py"


def pytest_node_id(classname: str | None, name: str, file: str | None = None) -> str:
    """The pytest node id (``tests/test_x.py::TestC::test_y[p]``) of a pytest JUnit case."""
    if not classname:
        return pytest_module_id(name, file)
    prefix = pytest_node_prefix(classname, file)
    return f"{prefix}::{name}" if prefix else name


def merge_rerun(previous: TestCase, final: TestCase) -> TestCase:
    """A rerun: ``previous`` attempts came first, ``final`` is the last attempt."""
    return replace(
        final,
        duration_s=previous.duration_s + final.duration_s,
        message=final.message or previous.message,
        details=final.details or previous.details,
        retries=previous.retries + 1 + final.retries,
        flaky=final.outcome is Outcome.PASSED,
    )
