"""Reports written by real runners during the test run; counts must equal the runner's own summary.

node's built-in test runner (TAP reporter), Perl's Test::More with ``prove`` and
``go test -json`` are used when installed; otherwise the test is skipped with
the reason.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ci_app.artifacts.detect import HEAD_BYTES, detect_format
from ci_app.model.results import Outcome

from .util import by_name, counts, parse_bytes

NODE_TESTS = """
import { test, describe, it, before } from 'node:test';
import assert from 'node:assert';
test('top pass', () => {});
test('top fail', () => { assert.strictEqual(1, 2); });
test('parent', async (t) => {
  await t.test('child ok', () => {});
  await t.test('child bad', () => { throw new Error('boom'); });
});
test('skipped', { skip: 'not now' }, () => {});
test('todo', { todo: true }, () => { throw new Error('x'); });
describe('suite A', () => { it('a1', () => {}); it('a2', () => {}); });
describe('suite B', () => {
  before(() => { throw new Error('hook'); });
  it('b1', () => {});
});
"""

PERL_TEST = """use strict; use warnings; use Test::More;
ok(1, 'first');
ok(0, 'second fails');
SKIP: { skip 'no db', 1; ok(1, 'db'); }
TODO: { local $TODO = 'later'; ok(0, 'todo thing'); }
subtest 'group' => sub { plan tests => 2; ok(1, 'inner a'); ok(1, 'inner b'); };
is(1, 2, 'is mismatch');
done_testing();
"""

GO_TEST = """package calc

import "testing"

func TestPass(t *testing.T) {}
func TestFail(t *testing.T) { t.Fatalf("got %d, want %d", 5, 4) }
func TestSkip(t *testing.T) { t.Skip("needs network") }
func TestTable(t *testing.T) {
	for _, n := range []int{1, 2} {
		t.Run(map[int]string{1: "one", 2: "two"}[n], func(t *testing.T) {
			if n == 2 {
				t.Error("two is wrong")
			}
		})
	}
}
"""


def _run(
    cmd: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, timeout=120, check=False, env=env)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_node_test_runner_tap(tmp_path: Path) -> None:
    (tmp_path / "a.test.mjs").write_text(NODE_TESTS, encoding="utf-8")
    proc = _run(["node", "--test", "--test-reporter=tap", "a.test.mjs"], tmp_path)
    if b"--test-reporter" in proc.stderr and b"bad option" in proc.stderr:
        pytest.skip("this node has no --test-reporter option")
    tap = proc.stdout
    assert detect_format(tap[:HEAD_BYTES]) == "tap"
    cases, ctx = parse_bytes(tap)
    assert ctx.tool == "node:test"
    # node's own trailer: "# tests N / # pass / # fail / # cancelled / # skipped / # todo"
    trailer = {k.decode(): int(float(v)) for k, v in re.findall(rb"^# (\w+) ([\d.]+)$", tap, re.M)}
    tests, passed, failed, errors, skipped = counts(cases)
    assert tests == trailer["tests"] == 10
    assert passed == trailer["pass"]
    assert failed == trailer["fail"]
    assert errors == trailer["cancelled"]
    assert skipped == trailer["skipped"] + trailer["todo"]
    c = {x.id: x for x in cases}
    assert c["parent::child bad"].message == "boom"
    assert c["suite B::b1"].outcome is Outcome.ERROR
    assert c["top fail"].file is not None and c["top fail"].file.endswith("a.test.mjs")


@pytest.mark.skipif(
    shutil.which("perl") is None or shutil.which("prove") is None, reason="perl/prove not installed"
)
def test_perl_test_more_against_prove_summary(tmp_path: Path) -> None:
    (tmp_path / "calc.t").write_text(PERL_TEST, encoding="utf-8")
    raw = _run(["perl", "calc.t"], tmp_path)
    if b"Can't locate Test/More.pm" in raw.stderr:
        pytest.skip("Test::More is not installed")
    cases, ctx = parse_bytes(raw.stdout)
    assert ctx.tool == "tap"
    summary = _run(["prove", "calc.t"], tmp_path).stdout.decode()
    # prove: "Files=1, Tests=6, ..." and "calc.t (Wstat: ... Tests: 6 Failed: 2)"
    m_tests = re.search(r"Tests=(\d+)", summary)
    m_failed = re.search(r"Failed: (\d+)\)", summary)
    assert m_tests and m_failed, summary
    tests, passed, failed, errors, skipped = counts(cases)
    assert tests == int(m_tests.group(1)) == 6
    assert failed == int(m_failed.group(1)) == 2
    assert (passed, errors, skipped) == (2, 0, 2)
    assert by_name(cases)["group"].outcome is Outcome.PASSED


@pytest.mark.skipif(shutil.which("go") is None, reason="go is not installed")
def test_go_test_json(tmp_path: Path) -> None:
    (tmp_path / "go.mod").write_text("module example.com/calc\n\ngo 1.21\n", encoding="utf-8")
    (tmp_path / "calc_test.go").write_text(GO_TEST, encoding="utf-8")
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOPROXY": "off", "GOTOOLCHAIN": "local"}
    env.setdefault("GOCACHE", str(tmp_path / ".gocache"))
    env.setdefault("HOME", str(tmp_path))
    proc = _run(["go", "test", "-json", "./..."], tmp_path, env)
    assert detect_format(proc.stdout[:HEAD_BYTES]) == "go-test-json", proc.stderr[-2000:]
    cases, _ = parse_bytes(proc.stdout)
    # go's own counting (as gotestsum prints it): parents and subtests are tests.
    assert counts(cases) == (6, 2, 3, 0, 1)
    c = by_name(cases)
    assert (c["TestFail"].message, c["TestFail"].file) == ("got 5, want 4", "calc_test.go")
    assert c["TestTable/two"].message == "two is wrong"


@pytest.mark.skipif(shutil.which("go") is None, reason="go is not installed")
def test_go_failures_outside_tests(tmp_path: Path) -> None:
    """A panic that kills the test binary, a failing TestMain and a build failure."""
    (tmp_path / "go.mod").write_text("module example.com/x\n\ngo 1.19\n", encoding="utf-8")
    files = {
        "panics/p_test.go": 'package panics\nimport "testing"\nfunc TestOK(t *testing.T) {}\n'
        'func TestPanic(t *testing.T) { go func() { panic("boom in goroutine") }(); select {} }\n',
        "mainfail/m_test.go": 'package mainfail\nimport ("fmt"; "os"; "testing")\n'
        'func TestMain(m *testing.M) { fmt.Println("setup: cannot connect"); os.Exit(3) }\n'
        "func TestY(t *testing.T) {}\n",
        "buildfail/b_test.go": 'package buildfail\nimport "testing"\n'
        "func TestX(t *testing.T) { undefinedThing() }\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOPROXY": "off", "GOTOOLCHAIN": "local"}
    env.setdefault("GOCACHE", str(tmp_path / ".gocache"))
    env.setdefault("HOME", str(tmp_path))
    proc = subprocess.run(
        ["sh", "-c", "go test -json ./... 2>&1"],
        cwd=tmp_path,
        capture_output=True,
        timeout=180,
        check=False,
        env=env,
    )
    assert proc.returncode != 0
    assert detect_format(proc.stdout[:HEAD_BYTES]) == "go-test-json"
    cases, _ = parse_bytes(proc.stdout)
    c = {x.id: x for x in cases}
    assert c["example.com/x/panics::TestOK"].outcome is Outcome.PASSED
    panic = c["example.com/x/panics::TestPanic"]
    assert panic.outcome is Outcome.ERROR and "boom in goroutine" in (panic.message or "")
    main = c["example.com/x/mainfail::[package]"]
    assert main.outcome is Outcome.ERROR and "cannot connect" in (main.message or "")
    build = c["example.com/x/buildfail::[package]"]
    assert build.outcome is Outcome.ERROR and "undefined" in (build.message or "")
    assert counts(cases) == (4, 1, 0, 3, 0)
