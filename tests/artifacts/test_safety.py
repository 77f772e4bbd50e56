"""Untrusted input: entities, bombs, deep nesting, zips, size caps."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from ci_app.artifacts.ingest import ingest_paths
from ci_app.artifacts.limits import Limits

SECRET = "TOP-SECRET-CONTENT-42"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_external_file_entity_is_never_resolved(tmp_path: Path) -> None:
    secret = _write(tmp_path, "secret.txt", SECRET)
    report = _write(
        tmp_path,
        "xxe.xml",
        f"""<?xml version="1.0"?>
<!DOCTYPE testsuite [<!ENTITY xxe SYSTEM "file://{secret}">]>
<testsuite name="s" tests="1"><testcase classname="c" name="t">
<failure message="&xxe;">&xxe;</failure></testcase></testsuite>""",
    )
    rs = ingest_paths([report])
    dumped = str(rs.to_dict())
    assert SECRET not in dumped


def test_network_entity_is_never_fetched(tmp_path: Path) -> None:
    # The autouse guard in conftest raises on any non-loopback connect; an
    # attempted fetch would also surface as a different error message.
    report = _write(
        tmp_path,
        "xxe-net.xml",
        """<?xml version="1.0"?>
<!DOCTYPE testsuite [<!ENTITY xxe SYSTEM "https://example.invalid/secret">]>
<testsuite name="s" tests="1"><testcase classname="c" name="t"><skipped message="&xxe;"/>
</testcase></testsuite>""",
    )
    rs = ingest_paths([report])
    assert "example.invalid" not in str([t.to_dict() for t in rs.tests])


@pytest.mark.timeout(60)  # a hang guard; what is asserted is that nothing was expanded
def test_billion_laughs_is_not_expanded(tmp_path: Path) -> None:
    lines = ['<!ENTITY lol0 "lol">']
    lines += [f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">' for i in range(1, 10)]
    report = _write(
        tmp_path,
        "bomb.xml",
        '<?xml version="1.0"?>\n<!DOCTYPE testsuite [' + "".join(lines) + "]>\n"
        '<testsuite name="s"><testcase classname="c" name="t">'
        '<failure message="&lol9;">&lol9;</failure></testcase></testsuite>',
    )
    rs = ingest_paths([report])
    # Either a clear error or the entity left unexpanded; never a billion "lol"s.
    assert len(str(rs.to_dict())) < 100_000


@pytest.mark.timeout(60)  # a hang guard; what is asserted is the depth error
def test_deep_nesting_is_a_clear_error(tmp_path: Path) -> None:
    depth = 100_000
    report = _write(
        tmp_path,
        "deep.xml",
        "<testsuites>" + "<testsuite>" * depth + "</testsuite>" * depth + "</testsuites>",
    )
    rs = ingest_paths([report])
    assert rs.files[0].error is not None
    assert "depth" in rs.files[0].error.lower()


def test_truncated_report_keeps_an_error_and_earlier_cases(tmp_path: Path) -> None:
    report = _write(
        tmp_path,
        "cut.xml",
        '<testsuite name="s"><testcase classname="c" name="a"/><testcase classname="c" name="b"/>'
        '<testcase classname="c" name="c"><failure message="x">tra',
    )
    rs = ingest_paths([report])
    file = rs.files[0]
    assert file.error is not None and "line" in file.error
    assert [t.name for t in rs.tests] == ["a", "b"]


def test_zip_is_read_without_extracting_and_names_members(tmp_path: Path) -> None:
    archive = tmp_path / "reports.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(
            "../../evil/report.xml",
            '<testsuite name="s"><testcase classname="c" name="t"/></testsuite>',
        )
        zf.writestr("notes.txt", "not a report")
    rs = ingest_paths([archive])
    assert rs.summary.tests == 1
    assert not (tmp_path.parent.parent / "evil").exists()
    paths = sorted(f.path for f in rs.files)
    assert paths[0].endswith("!../../evil/report.xml")
    assert any(f.error for f in rs.files)  # notes.txt is reported, not fatal


def test_zip_bomb_ratio_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.xml", "<testsuite>" + " " * (20 * 1024 * 1024) + "</testsuite>")
    rs = ingest_paths([archive])
    assert rs.files[0].error is not None and "ratio" in rs.files[0].error


def test_size_cap_has_a_clear_message(tmp_path: Path) -> None:
    report = _write(tmp_path, "r.xml", '<testsuite name="s">' + " " * 5000 + "</testsuite>")
    rs = ingest_paths([report], limits=Limits(max_file_bytes=1000))
    assert rs.files[0].error is not None and "cap" in rs.files[0].error


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("", "empty"),
        ("just some text", "not a recognised"),
        ("<suites><suite/></suites>", "<suites>"),
        ('{"hello": 1}', "JSON"),
    ],
)
def test_unusable_inputs_become_file_errors(tmp_path: Path, content: str, needle: str) -> None:
    report = _write(tmp_path, "x.xml", content)
    rs = ingest_paths([report])
    assert rs.files[0].error is not None and needle in rs.files[0].error
