"""Record a real session against the FakeGuest (psrpcore's PSRP server), replay it without one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hvmagic.clixml.values import (
    ErrorRecord,
    InformationalRecord,
    ProgressRecord,
    PSCredential,
    PSObject,
    SecureString,
)
from hvmagic.errors import HvMagicError, RemoteError, ReplayMismatchError
from hvmagic.recording import RecordingSession, ReplaySession
from hvmagic.secrets import REDACTED, redact
from hvmagic.testing import FakeGuest

SERVICES = "Get-Service | Where-Object Name -like 'vm*'"


def _guest() -> FakeGuest:
    guest = FakeGuest()

    @guest.handle(SERVICES)
    def services(ctx: Any) -> None:
        ctx.verbose("enumerating services")
        ctx.progress("Services", "reading", 50)
        for name, status in (("vmicheartbeat", "Running"), ("vmicvss", "Stopped")):
            ctx.output(
                {"Name": name, "Status": status, "DisplayName": f"Hyper-V {name}", "Pid": 4}
            )
        ctx.warning("one service is stopped")
        ctx.host_write("done scanning")
        ctx.progress("Services", "done", 100, completed=True)

    @guest.handle("$echo", regex=False)
    def echo(ctx: Any) -> None:
        ctx.output(ctx.parameters.get("value"))
        ctx.output(ctx.parameters.get("secret") is not None)

    @guest.handle("throw")
    def fail(ctx: Any) -> None:
        ctx.error("soft failure", error_id="Soft,Test")
        ctx.fail("hard failure", error_id="Hard,Test")

    return guest


def _record(path: Path) -> list[tuple[str, Any, list[tuple[str, Any]]]]:
    """Runs three scripts through a recording session; returns what a live user saw."""
    seen: list[tuple[str, Any, list[tuple[str, Any]]]] = []
    with _guest() as guest, RecordingSession(guest.connect(), path) as session:
        events: list[tuple[str, Any]] = []
        result = session.run(SERVICES, on_event=lambda s, r: events.append((s, r)))
        seen.append((SERVICES, result, events))
        events = []
        result = session.run(
            "$echo", {"value": "héllo 🌍", "secret": SecureString("Pa55w0rd!")},
            on_event=lambda s, r: events.append((s, r)),
        )
        seen.append(("$echo", result, events))
        events = []
        with pytest.raises(RemoteError) as failed:
            session.run("throw", on_event=lambda s, r: events.append((s, r)))
        seen.append(("throw", failed.value, events))
    return seen


def _kinds(events: list[tuple[str, Any]]) -> list[tuple[str, str]]:
    return [(stream, str(getattr(record, "message", record))) for stream, record in events]


def test_replay_reproduces_every_record_and_the_frame(tmp_path: Path) -> None:
    path = tmp_path / "triage.hvrec.json"
    live = _record(path)
    replay = ReplaySession(path)
    assert replay.name and replay.remaining == 3

    events: list[tuple[str, Any]] = []
    result = replay.run(SERVICES, on_event=lambda s, r: events.append((s, r)))
    live_result = live[0][1]
    assert _kinds(events) == _kinds(live[0][2])
    assert [s for s, _ in events][:2] == ["verbose", "progress"]
    assert isinstance(result.verbose[0], InformationalRecord)
    assert result.verbose[0].message == "enumerating services"
    assert result.warnings[0].message == "one service is stopped"
    assert result.host == ["done scanning"]
    assert isinstance(result.progress[-1], ProgressRecord) and result.progress[-1].completed
    assert [o["Name"] for o in result.output] == ["vmicheartbeat", "vmicvss"]
    assert result.output[0].type_names == live_result.output[0].type_names
    assert result.frame().to_html() == live_result.frame().to_html()
    assert result.state == "Completed" and result.duration == pytest.approx(
        live_result.duration, abs=1e-3
    )

    echoed = replay.run("$echo", {"value": "héllo 🌍", "secret": SecureString("other")})
    assert echoed.output == ["héllo 🌍", True]

    with pytest.raises(RemoteError) as failed:
        replay.run("throw")
    assert isinstance(failed.value.record, ErrorRecord)
    assert failed.value.record.message == "hard failure"
    live_error = live[2][1].record
    assert failed.value.record.fully_qualified_error_id == live_error.fully_qualified_error_id
    assert [e.message for e in failed.value.result.errors] == ["soft failure"]
    assert failed.value.result.state == "Failed"
    assert replay.remaining == 0


def test_secrets_never_reach_the_file(tmp_path: Path) -> None:
    path = tmp_path / "rec.hvrec.json"
    _record(path)
    text = path.read_text(encoding="utf-8")
    assert "Pa55w0rd!" not in text
    assert "UABhADUANQB3ADAAcgBkACEA" not in text  # nor its UTF-16LE base64
    document = json.loads(text)
    assert document["format"] == "hvmagic-recording" and document["version"] == 1
    assert document["runs"][1]["parameters"]["secret"] == {"redacted": "SecureString"}
    assert "clixml" in document["runs"][1]["parameters"]["value"]


def test_redact_replaces_secrets_in_nested_output() -> None:
    cred = PSCredential("CORP\\admin", "hunter2")
    value = PSObject({"Cred": cred, "List": [SecureString("x"), 1], "Name": "n"}, ["T"])
    cleaned = redact(value)
    assert cleaned["Cred"]["UserName"] == "CORP\\admin"
    assert cleaned["Cred"]["Password"] == REDACTED
    assert cleaned["List"] == [REDACTED, 1]
    assert cleaned["Name"] == "n" and cleaned.type_names == ["T"]
    assert isinstance(value["Cred"], PSCredential)  # the original is untouched
    plain = PSObject({"A": 1}, ["T"])
    assert redact(plain) is plain


def test_sequential_mismatch_names_the_difference(tmp_path: Path) -> None:
    path = tmp_path / "rec.hvrec.json"
    _record(path)
    replay = ReplaySession(path)
    with pytest.raises(ReplayMismatchError, match=r"run 1 differs[\s\S]*\+Get-Process"):
        replay.run("Get-Process")
    # whitespace and line endings do not count as differences
    assert replay.run(SERVICES + "  \r\n").state == "Completed"
    with pytest.raises(ReplayMismatchError, match=r"parameter \$value differs"):
        replay.run("$echo", {"value": "changed", "secret": SecureString("x")})


def test_script_matching_allows_reruns_and_any_order(tmp_path: Path) -> None:
    path = tmp_path / "rec.hvrec.json"
    _record(path)
    replay = ReplaySession(path, match="script")
    assert replay.run("$echo", {"value": "héllo 🌍", "secret": SecureString("s")}).output[0] == (
        "héllo 🌍"
    )
    first = replay.run(SERVICES)
    again = replay.run(SERVICES)  # all recorded runs used: the last one is served again
    assert first.frame().equals(again.frame())
    with pytest.raises(ReplayMismatchError, match="no recorded run"):
        replay.run("Get-Date")


def test_exhausted_and_bad_files_are_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "rec.hvrec.json"
    _record(path)
    replay = ReplaySession(path)
    replay.run(SERVICES)
    replay.run("$echo", {"value": "héllo 🌍", "secret": SecureString("s")})
    with pytest.raises(RemoteError):
        replay.run("throw")
    with pytest.raises(ReplayMismatchError, match="all were replayed") as info:
        replay.run(SERVICES)
    # the first line (all a magic shows in its error) names the run, never ends on a colon
    first = str(info.value).splitlines()[0]
    assert first.endswith(f"this run was not recorded: {SERVICES.strip().splitlines()[0]}")

    with pytest.raises(HvMagicError, match="no recording at"):
        ReplaySession(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(HvMagicError, match="not a readable hvmagic recording"):
        ReplaySession(bad)
    bad.write_text(json.dumps({"format": "hvmagic-recording", "version": 99, "runs": []}))
    with pytest.raises(HvMagicError, match="version 99"):
        ReplaySession(bad)


def test_failed_parameter_check_does_not_consume_the_run(tmp_path: Path) -> None:
    path = tmp_path / "rec.hvrec.json"
    _record(path)
    replay = ReplaySession(path)
    replay.run(SERVICES)
    with pytest.raises(ReplayMismatchError, match=r"parameter \$value differs"):
        replay.run("$echo", {"value": "typo", "secret": SecureString("s")})
    # the corrected cell meets the same recorded run again, not the next one
    fixed = replay.run("$echo", {"value": "héllo 🌍", "secret": SecureString("s")})
    assert fixed.output[0] == "héllo 🌍"
    assert replay.remaining == 1


def test_file_is_valid_json_after_every_run_and_appends_only_the_new_run(tmp_path: Path) -> None:
    path = tmp_path / "rec.hvrec.json"
    sizes = []
    with _guest() as guest, RecordingSession(guest.connect(), path) as session:
        assert json.loads(path.read_text(encoding="utf-8"))["runs"] == []
        for round_ in range(3):
            session.run(SERVICES)
            document = json.loads(path.read_text(encoding="utf-8"))
            assert len(document["runs"]) == round_ + 1
            sizes.append(path.stat().st_size)
    # every run adds about the same amount (timings vary by a digit or two): nothing already
    # written is rewritten or duplicated
    assert sizes[1] - sizes[0] > 1000
    assert abs((sizes[2] - sizes[1]) - (sizes[1] - sizes[0])) < 50
    lines = path.read_text(encoding="utf-8").splitlines()
    # one per record, the PSHOST twin of the Write-Host line included (kept quiet on replay)
    assert sum(line.lstrip().startswith('{"t":') for line in lines) == 3 * 8


def test_large_parameters_are_recorded_by_digest_and_still_checked(tmp_path: Path) -> None:
    path = tmp_path / "rec.hvrec.json"
    chunk = "A" * 100_000  # like a base64 file-copy chunk
    with _guest() as guest, RecordingSession(guest.connect(), path) as session:
        guest.add_handler("$size", lambda ctx: ctx.output(len(ctx.parameters["value"])))
        assert session.run("$size", {"value": chunk}).output == [100_000]
    text = path.read_text(encoding="utf-8")
    assert chunk not in text and len(text) < 20_000
    recorded = json.loads(text)["runs"][0]["parameters"]["value"]
    assert set(recorded) == {"sha256", "chars"} and recorded["chars"] > 100_000
    replay = ReplaySession(path)
    with pytest.raises(ReplayMismatchError, match=r"parameter \$value differs"):
        replay.run("$size", {"value": chunk[:-1] + "B"})
    assert replay.run("$size", {"value": chunk}).output == [100_000]
