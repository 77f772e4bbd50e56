"""ciout: escaping of workflow commands, GITHUB_OUTPUT heredocs, job summary budget, sections."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ci_app.ciout import (
    JOB_SUMMARY_LIMIT,
    CiOutput,
    annotation,
    dotenv_line,
    escape_data,
    escape_property,
    gitlab_section_end,
    gitlab_section_start,
    output_entry,
    workflow_command,
)


def _unescape_data(s: str) -> str:
    return s.replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%")


def _unescape_property(s: str) -> str:
    return _unescape_data(s.replace("%3A", ":").replace("%2C", ","))


def test_escape_data_and_property() -> None:
    assert escape_data("50%\r\nnext") == "50%25%0D%0Anext"
    assert escape_property("a:b,c%\n") == "a%3Ab%2Cc%25%0A"
    # '%' first: an already escaped-looking sequence survives a round trip
    assert escape_data("%0A") == "%250A"


def test_annotation_properties_cannot_inject() -> None:
    line = annotation(
        "error",
        "boom\n::set-output name=x::y",
        file="tests/a,b:c.py",
        line=3,
        title="t::1, with comma",
    )
    assert "\n" not in line
    head, _, message = line.partition("::")[2].partition("::")
    assert head.startswith("error ")
    props = dict(p.split("=", 1) for p in head[len("error ") :].split(","))
    assert set(props) == {"file", "line", "title"}
    assert _unescape_property(props["file"]) == "tests/a,b:c.py"
    assert _unescape_property(props["title"]) == "t::1, with comma"
    assert props["line"] == "3"
    assert _unescape_data(message) == "boom\n::set-output name=x::y"


def test_annotation_defaults_line_1_with_file_and_none_without() -> None:
    assert annotation("warning", "m", file="x.py") == "::warning file=x.py,line=1::m"
    assert annotation("notice", "m") == "::notice::m"
    with pytest.raises(ValueError, match="workflow command"):
        workflow_command("bad cmd", "x")


@given(st.text(), st.text())
def test_property_and_data_round_trip(prop: str, msg: str) -> None:
    line = workflow_command("error", msg, {"title": prop})
    assert "\n" not in line and "\r" not in line
    m = re.fullmatch(r"::error title=([^,:]*)::(.*)", line, flags=re.DOTALL)
    assert m is not None
    assert _unescape_property(m.group(1)) == prop
    assert _unescape_data(m.group(2)) == msg


def _parse_github_output(text: str) -> dict[str, str]:
    """The runner's parser: name=value lines and name<<DELIM heredocs."""
    out: dict[str, str] = {}
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line:
            i += 1
            continue
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delim = line.split("<<", 1)
            j = lines.index(delim, i + 1)
            out[name] = "\n".join(lines[i + 1 : j])
            i = j + 1
        else:
            name, value = line.split("=", 1)
            out[name] = value
            i += 1
    return out


@given(st.text(alphabet=st.characters(exclude_characters="\r"), max_size=200))
def test_output_entry_round_trips_multiline(value: str) -> None:
    parsed = _parse_github_output(output_entry("matrix", value) + output_entry("after", "x"))
    assert parsed["matrix"] == value
    assert parsed["after"] == "x"


def test_output_entry_delimiter_not_in_value() -> None:
    text = output_entry("m", "line1\nghadelimiter_fake\nline3")
    delim = text.split("\n", 1)[0].split("<<", 1)[1]
    assert delim.startswith("ghadelimiter_")
    assert delim not in "line1\nghadelimiter_fake\nline3"
    with pytest.raises(ValueError):
        output_entry("bad name", "x")


def test_set_output_appends_to_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    ci = CiOutput({"GITHUB_OUTPUT": str(out)}, stream=io.StringIO())
    assert ci.set_output("a", "1")
    assert ci.set_output("b", "x\ny")
    assert _parse_github_output(out.read_text()) == {"a": "1", "b": "x\ny"}
    assert not CiOutput({}, stream=io.StringIO()).set_output("a", "1")


def test_job_summary_stays_within_1_mib(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    ci = CiOutput({"GITHUB_STEP_SUMMARY": str(summary)}, stream=io.StringIO())
    assert ci.append_summary("# head\n")
    big = "\n".join(f"| row {i} | {'é' * 50} |" for i in range(20_000))
    assert ci.append_summary(big)
    data = summary.read_bytes()
    assert len(data) <= JOB_SUMMARY_LIMIT
    text = data.decode("utf-8")  # cut on a line boundary: still valid UTF-8
    assert text.startswith("# head\n")
    assert "truncated" in text.splitlines()[-1]
    # later appends never push it over the limit either
    ci.append_summary("more\n" * 1000)
    assert len(summary.read_bytes()) <= JOB_SUMMARY_LIMIT


def test_github_group_and_annotation_cap() -> None:
    buf = io.StringIO()
    ci = CiOutput({"GITHUB_ACTIONS": "true"}, stream=buf)
    with ci.group("a, b: c\nd"):
        ci.info("::stop-commands::x")
    for i in range(12):
        ci.annotate("error", f"e{i}", file="f.py", line=i + 1)
    lines = buf.getvalue().splitlines()
    assert lines[0] == "::group::a, b: c%0Ad"
    assert lines[1] == " ::stop-commands::x"  # a log line cannot become a command
    assert lines[2] == "::endgroup::"
    assert sum(1 for x in lines if x.startswith("::error")) == 10
    assert ci.dropped == 2


def test_gitlab_sections() -> None:
    start = gitlab_section_start("shard cpu-1", "Shard\ncpu-1", now=5)
    assert start == "\x1b[0Ksection_start:5:shard_cpu-1[collapsed=true]\r\x1b[0KShard cpu-1"
    assert gitlab_section_end("shard cpu-1", now=6) == "\x1b[0Ksection_end:6:shard_cpu-1\r\x1b[0K"
    buf = io.StringIO()
    ci = CiOutput({"GITLAB_CI": "true"}, stream=buf)
    with ci.group("plan"):
        pass
    assert "section_start" in buf.getvalue() and "section_end" in buf.getvalue()
    assert ci.annotate("error", "m", file="a.py", line=2)
    assert "error: a.py:2: m" in buf.getvalue()


def test_dotenv_line() -> None:
    assert dotenv_line("CI_FANOUT_RUN_ID", "12") == "CI_FANOUT_RUN_ID=12\n"
    with pytest.raises(ValueError):
        dotenv_line("X", "a\nb")
    with pytest.raises(ValueError):
        dotenv_line("1X", "a")


def test_mask_only_on_github() -> None:
    buf = io.StringIO()
    CiOutput({"GITHUB_ACTIONS": "true"}, stream=buf).mask("s3cr%t")
    assert buf.getvalue() == "::add-mask::s3cr%25t\n"
    buf2 = io.StringIO()
    CiOutput({}, stream=buf2).mask("s3cret")
    assert buf2.getvalue() == ""
