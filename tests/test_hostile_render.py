"""Hostile values on every rendering path, and what a notebook keeps when a cell fails (issue 16).

The decoder returns cyclic objects on purpose (``<Ref>`` to an object still being decoded) and
shares one object under many ``<Ref>``\\ s. Every path that turns values into text — ``repr``,
``str``, DataFrame cells, HTML, recordings, ``%%vmps`` — must finish, bounded, and show ``…``
where it stopped. The objects come from real CLIXML through the real decoder, and through a
FakeGuest session for the magics.
"""

from __future__ import annotations

import _thread
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from psrpcore.types import PSRPMessageType

import hvmagic
from hvmagic import display
from hvmagic.clixml import loads
from hvmagic.clixml.values import PSObject, SecureString, bounded_text
from hvmagic.frames import to_dataframe
from hvmagic.recording import _decode_event, _encode_event
from hvmagic.secrets import redact
from hvmagic.testing import FakeGuest, HandlerContext

NS = 'xmlns="http://schemas.microsoft.com/powershell/2004/04"'


def _deep(levels: int) -> str:
    inner = '<S N="leaf">bottom</S>'
    for level in range(levels, 0, -1):
        inner = (f'<Obj N="child" RefId="{level}"><MS><I32 N="i">{level}</I32>{inner}</MS>'
                 "</Obj>")
    return f'<Obj RefId="0"><TN RefId="0"><T>Hostile.Deep</T></TN><MS>{inner}</MS></Obj>'


def _shared(levels: int) -> str:
    # each level holds the next one twice (and in a list twice): 2^levels paths, one object
    inner = '<S N="x">end</S>'
    for level in range(levels, 0, -1):
        inner = (f'<Obj N="a" RefId="{level}"><MS>{inner}</MS></Obj><Ref N="b" RefId="{level}" />'
                 f'<Obj N="c" RefId="{1000 + level}"><TN RefId="{level}"><T>System.Object[]</T>'
                 f'</TN><LST><Ref RefId="{level}" /><Ref RefId="{level}" /></LST></Obj>')
    return f'<Obj RefId="0"><TN RefId="0"><T>Hostile.Shared</T></TN><MS>{inner}</MS></Obj>'


def _shared_lists(levels: int) -> str:
    # lists only: pandas prints three levels, then str() of the rest, 2^levels elements
    inner = "<I32>1</I32>"
    for level in range(levels, 0, -1):
        inner = (f'<Obj RefId="{level}"><TN RefId="{level}"><T>System.Object[]</T></TN>'
                 f'<LST>{inner}</LST></Obj><Ref RefId="{level}" />')
    return ('<Obj RefId="0"><TN RefId="0"><T>Hostile.Lists</T></TN><MS><Obj N="v" RefId="999">'
            f'<TN RefId="999"><T>System.Object[]</T></TN><LST>{inner}</LST></Obj></MS></Obj>')


HOSTILE = {
    "self": '<Obj RefId="0"><TN RefId="0"><T>Hostile.Loop</T></TN><MS><I32 N="n">1</I32>'
            '<Ref N="self" RefId="0" /></MS></Obj>',
    "pair": '<Obj RefId="0"><TN RefId="0"><T>Hostile.A</T></TN><MS><Obj N="b" RefId="1">'
            '<TN RefId="1"><T>Hostile.B</T></TN><MS><Ref N="a" RefId="0" /></MS></Obj></MS></Obj>',
    "list": '<Obj RefId="0"><TN RefId="0"><T>Hostile.List</T></TN><MS><Obj N="l" RefId="1">'
            '<TN RefId="1"><T>System.Object[]</T></TN><LST><I32>1</I32><Ref RefId="1" />'
            '<Ref RefId="0" /></LST></Obj></MS></Obj>',
    "deep240": _deep(240),
    "shared200": _shared(200),
    "lists200": _shared_lists(200),
}


def decoded(name: str) -> Any:
    values = loads(f'<Objs Version="1.1.0.1" {NS}>{HOSTILE[name]}</Objs>')
    assert len(values) == 1
    return values[0]


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_every_rendering_path_finishes(name: str) -> None:
    # was: RecursionError from repr/str/frames/recording for all but "list"
    value = decoded(name)
    display.render_frame(to_dataframe([{"warm": "up"}]), 5)  # pandas' imports are not timed
    started = time.monotonic()
    shown = [repr(value), str(value), bounded_text(value, 500)]
    for columns in ("default", "all"):
        frame = to_dataframe([value, value], columns)
        bundle = display.render_frame(frame, 60)
        shown += [bundle["text/plain"], bundle["text/html"]]
    shown.append(display.render_text_output([value])["text/plain"])
    event = _encode_event("output", value, 0.0)
    stream, again = _decode_event(event)
    shown.append(repr(again))
    elapsed = time.monotonic() - started
    assert elapsed < 3.0
    assert all(len(text) < 200_000 for text in shown)
    assert stream == "output" and isinstance(again, PSObject)
    if name != "list":
        assert "…" in str(value)  # where the walk stopped, as PowerShell's formatter shows


def test_only_unprintable_list_cells_are_wrapped() -> None:
    from hvmagic.frames import NestedValue

    hostile = decoded("lists200")
    frame = to_dataframe([hostile, PSObject({"v": [1, [2, [3]]]}, ["Hostile.Lists"])])
    cell, plain = frame["v"].tolist()
    assert isinstance(cell, NestedValue) and cell.value is hostile["v"]
    assert len(str(cell)) <= 1000 and str(cell).startswith("[[[[")
    assert plain == [1, [2, [3]]]  # an ordinary nested list stays a list


def test_a_cycle_shows_its_first_level_like_powershell_then_stops() -> None:
    value = decoded("self")
    assert value["self"] is value  # the decoder keeps the cycle
    assert str(value) == "@{n=1; self=@{n=1; self=…}}"
    assert repr(value) == "<Hostile.Loop n=1, self=@{n=1; self=…}>"
    assert bounded_text([1, "a", (2,)], 100) == str([1, "a", (2,)])  # plain values unchanged


def test_redaction_walks_shared_objects_once_and_finds_secrets_behind_cycles() -> None:
    shared = decoded("shared200")
    started = time.monotonic()
    assert redact(shared) is shared  # nothing secret: nothing copied
    assert time.monotonic() - started < 1.0
    first = PSObject({"n": 1})
    second = PSObject({"back": first})
    first.properties.update({"next": second, "password": SecureString("hunter2")})
    copy = redact(second)  # the secret is reached only through the cycle
    assert copy["back"]["password"] == "<redacted SecureString>"
    assert copy["back"]["next"] is copy  # the cycle survives the copy


# ---------------------------------------------------------------------------- through %%vmps


@pytest.fixture(scope="module")
def guest() -> Iterator[FakeGuest]:
    fake = FakeGuest()
    fake.state["rows sent"] = threading.Event()

    @fake.handle(r"^hostile (\w+)$", regex=True)
    def hostile(ctx: HandlerContext) -> None:
        assert ctx.match is not None
        body = HOSTILE[ctx.match.group(1)].encode()
        for _ in range(3):
            ctx._connection._send_raw_message(ctx._pipeline, PSRPMessageType.PipelineOutput, body)

    @fake.handle(r"^rows then (\w+)$", regex=True)
    def rows_then(ctx: HandlerContext) -> None:
        assert ctx.match is not None
        ctx.output_many({"N": n} for n in range(20))
        ctx.guest.state["rows sent"].set()
        how = ctx.match.group(1)
        if how == "die":
            ctx._connection.kill()
        elif how == "fail":
            ctx.fail("it failed on purpose")
        ctx.sleep(60)

    yield fake
    fake.close()


@pytest.fixture
def ip(guest: FakeGuest) -> Iterator[InteractiveShell]:
    shell = InteractiveShell.instance()
    shell.config.pop("VmMagics", None)
    shell.extension_manager.load_extension("hvmagic")
    shell.user_ns["hostile_session"] = guest.connect()
    with capture_output():
        shell.run_line_magic("vmconnect", "vm --session hostile_session")
    yield shell
    with capture_output():
        shell.run_line_magic("vmclose", "vm")
    shell.user_ns["hostile_session"].close()
    shell.extension_manager.unload_extension("hvmagic")
    for name in ("_vmps_result", "rows", "x", "hostile_session"):
        shell.user_ns.pop(name, None)


def run_cell(shell: InteractiveShell, code: str) -> tuple[Any, Any, float]:
    started = time.monotonic()
    with capture_output() as captured:
        result = shell.run_cell(code)
    return result, captured, time.monotonic() - started


@pytest.mark.parametrize("options", ["", "--columns all", "--raw -o x"])
@pytest.mark.parametrize("name", ["self", "lists200", "deep240"])
def test_vmps_shows_cyclic_and_deep_objects(ip: InteractiveShell, options: str,
                                            name: str) -> None:
    # was: the cell recursed until RecursionError
    result, captured, elapsed = run_cell(ip, f"%%vmps vm {options}\nhostile {name}")
    assert result.error_in_exec is None, result.error_in_exec
    assert elapsed < 10
    assert len(ip.user_ns["_vmps_result"].output) == 3
    if "-o x" in options:
        assert len(ip.user_ns["x"]) == 3 and ip.user_ns["x"][0] is ip.user_ns["x"][0]
    assert captured.outputs, "the frame was shown"


@pytest.mark.parametrize("how", ["timeout", "die", "fail"])
def test_failed_cells_bind_what_arrived(ip: InteractiveShell, how: str) -> None:
    # was: _vmps_result undefined on a timeout (while the notice pointed at it), -o unbound
    script = "rows then wait" if how == "timeout" else f"rows then {how}"
    result, captured, _ = run_cell(ip, f"%%vmps vm --timeout 1.5 -o rows\n{script}")
    assert result.error_in_exec is not None
    partial = ip.user_ns["_vmps_result"]
    assert [row["N"] for row in partial.output] == list(range(20))
    assert ip.user_ns["rows"]["N"].tolist() == list(range(20))
    assert "partial result" in captured.stdout


def test_ctrl_c_binds_what_arrived_and_says_it_is_partial(
    ip: InteractiveShell, guest: FakeGuest
) -> None:
    # was: nothing shown and `rows` not bound after an interrupt
    sent: threading.Event = guest.state["rows sent"]
    sent.clear()
    done = threading.Event()

    def interrupt_once_the_rows_are_out() -> None:
        if sent.wait(10):
            time.sleep(0.3)  # the rows reach the client; the guest sleeps in its handler
            if not done.is_set():
                _thread.interrupt_main()

    threading.Thread(target=interrupt_once_the_rows_are_out, daemon=True).start()
    try:
        result, captured, elapsed = run_cell(ip, "%%vmps vm -o rows\nrows then wait")
    finally:
        done.set()
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    assert elapsed < 10
    assert ip.user_ns["rows"]["N"].tolist() == list(range(20))
    assert ip.user_ns["_vmps_result"].state == "Stopped"
    assert "partial result" in captured.stdout
    assert not ip.user_ns["hostile_session"].broken  # the stop worked: still usable


# ---------------------------------------------------------------------------- 8. secrets


def test_a_str_password_is_in_no_frame_below_connect() -> None:
    # was: the plain str in the locals of connect, its retry closure and the direct opener,
    # which %xmode Verbose prints with a traceback
    secret = "hunter2-" + "not-in-any-frame"
    with pytest.raises(hvmagic.errors.HvMagicError) as info:
        hvmagic.connect("vm1", via="direct", username="u", password=secret, timeout=1)
    leaks = []
    for frame, _ in traceback.walk_tb(info.value.__traceback__):
        if frame.f_code.co_filename == __file__:
            continue  # this test's own frame holds it, as the user's cell would
        for name, value in frame.f_locals.items():
            values = [value, *(value.values() if isinstance(value, dict) else ())]
            if any(isinstance(v, str) and secret in v for v in values):
                leaks.append(f"{frame.f_code.co_name}:{name}")
    assert len(list(traceback.walk_tb(info.value.__traceback__))) > 2
    assert leaks == []
