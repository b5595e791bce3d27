"""What the notebook showed for the exploration's cells, judged by what PowerShell prints.

Found by running ``tests/pwsh/exploration_cells.py`` in a real kernel
(``bench/exploration_notebook.py``), each fixed and checked here against PowerShell in the same
run:

* a volume's ``SizeRemaining``/``Size`` showed bytes where PowerShell's table prints
  ``66.34 GB`` (the demo module carries the Storage module's view; PowerShell formats the demo's
  volumes, and synthetic ones at the unit boundaries, with it);
* a Double on its own line showed as Python prints it (``2.0``, ``66.34132385253906``) where
  PowerShell prints ``2`` and ``66.3413238525391``;
* ``Write-Information 'x'`` was shown although PowerShell's client shows nothing, and with
  ``-InformationAction Continue`` it was shown twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from hvmagic import display
from hvmagic.demo import forget_machine, open_demo_session
from hvmagic.session import Session
from tests.pwsh.ownclient import OWN_CLIENT_SCRIPTS, own_client  # noqa: F401
from tests.pwsh.test_views import parse_table

INFORMATION = {
    "information quiet": "Write-Information 'quiet'",
    "information shown": "Write-Information 'shown info' -InformationAction Continue",
    "information host": "Write-Host 'from host'; Write-Information 'tagged' -Tags T",
}
OWN_CLIENT_SCRIPTS.update(INFORMATION)


@pytest.fixture(scope="module")
def demo(pwsh: str) -> Iterator[Session]:
    name = f"display-{uuid.uuid4().hex[:8]}"
    session = open_demo_session(executable=pwsh, name=name, timeout=120)
    try:
        yield session
    finally:
        session.close()
        forget_machine(name)


def _powershell_table(session: Session, script: str) -> tuple[list[str], list[list[str]]]:
    return parse_table(session.run(f"{script} | Format-Table | Out-String -Width 300").output[0])


def test_volume_sizes_are_shown_as_powershells_table_prints_them(demo: Session) -> None:
    result = demo.run("Get-Volume")
    headers, rows = _powershell_table(demo, "Get-Volume")
    shown = result.frame(labels=True)
    assert list(shown.columns) == headers
    for column in ("SizeRemaining", "Size"):
        assert shown[column].tolist() == [row[headers.index(column)] for row in rows]
    assert shown["Size"].tolist()[0].endswith(" GB")
    # the frame -o binds keeps the bytes; the display right-aligns the text, as PowerShell does
    assert result.frame()["Size"].tolist() == [int(v["Size"]) for v in result.output]
    assert shown.attrs["hvmagic_align"] == {"SizeRemaining": "right", "Size": "right"}
    page = display.render_frame(shown)["text/html"]
    left = page.split("{ text-align: left; }")[0]
    assert "nth-child(8)" not in left and "nth-child(9)" not in left  # sizes: columns 7, 8


SIZES = [0, 1, 1023, 1024, 1025, 1536, 1048575, 1048576, 5 * 2**30 + 1, 71233454080,
         136365211648, 87195648, 3 * 2**50, 2**62, 10**15 + 7]


def test_storage_sizes_round_as_powershell_at_every_unit(demo: Session) -> None:
    from hvmagic.views import storage_size

    script = (
        "$Sizes | ForEach-Object { $v = [pscustomobject]@{ DriveLetter = 'X'; FriendlyName = '';"
        " FileSystemType = 'NTFS'; DriveType = 'Fixed'; HealthStatus = 'Healthy';"
        " OperationalStatus = 'OK'; SizeRemaining = [uint64] $_; Size = [uint64] $_ }\n"
        " $v.PSTypeNames.Insert(0, 'Microsoft.Management.Infrastructure.CimInstance#ROOT/"
        "Microsoft/Windows/Storage/MSFT_Volume'); $v } | Format-Table | Out-String -Width 300"
    )
    headers, rows = parse_table(demo.run(script, {"Sizes": SIZES}).output[0])
    theirs = [row[headers.index("Size")] for row in rows]
    assert [storage_size(size) for size in SIZES] == theirs


DOUBLES = ("[math]::Round(2.5); 1/3; 1e15; 1e14; 1e-5; 0.1 + 0.2; 150.0; -0.0; [double]::NaN;"
           " [double]::NegativeInfinity; (Get-Volume -DriveLetter C).SizeRemaining / 1GB;"
           " [double]::MaxValue")


def test_doubles_are_printed_as_powershell_prints_them(demo: Session) -> None:
    result = demo.run(DOUBLES)
    ours = display.render_text_output(result.output, ps_version=demo.ps_version)[
        "text/plain"].splitlines()
    theirs = demo.run(f"& {{ {DOUBLES} }} | Out-String -Stream").output
    assert ours == theirs
    assert ours[0] == "2"


def _shown_live(session: Any, script: str) -> list[str]:
    """The lines hvmagic's live renderer shows for ``script`` (output as lines of text)."""
    shown: list[str] = []
    live = display.LiveRenderer(
        publish_bundle=lambda bundle: shown.extend(bundle["text/plain"].splitlines()),
        show_output=lambda values: shown.extend(
            display.render_text_output(values)["text/plain"].splitlines()),
    )
    session.run(script, on_event=live.on_event)
    live.flush_output()
    live.finish()
    return shown


@pytest.mark.parametrize("name", list(INFORMATION))
def test_information_is_shown_as_powershells_client_shows_it(
    name: str, own_client: dict[str, Any], shared_pwsh_session: Any,  # noqa: F811
) -> None:
    displayed, _ = own_client[name]
    assert _shown_live(shared_pwsh_session, INFORMATION[name]) == displayed


def test_get_help_shows_the_synopsis_not_a_table_of_its_parts(demo: Session) -> None:
    # was: a one-row table of details/parameters/syntax/xmlns:maml ... cells
    result = demo.run("Get-Help Get-Service")
    assert display.is_help_output(result.output)
    shown = display.render_help(result.output)["text/plain"].splitlines()
    synopsis = demo.run("(Get-Help Get-Service).Synopsis").output[0]
    assert shown[0] == f"Get-Service: {synopsis}"
    assert "Get-Help Get-Service | Out-String" in shown[1]
    # and PowerShell's text, the one the hint points to, says the same
    assert synopsis in demo.run("Get-Help Get-Service | Out-String").output[0]


def test_a_list_of_help_topics_is_powershells_table(demo: Session) -> None:
    result = demo.run("Get-Help *-Service")
    headers, rows = _powershell_table(demo, "Get-Help *-Service")
    shown = result.frame(labels=True)
    assert list(shown.columns) == headers == ["Name", "Category", "Module", "Synopsis"]
    assert shown["Name"].tolist() == [row[0] for row in rows]
    assert not display.is_help_output(result.output)
