"""Running a ``%%vmps`` cell and showing what it produces, live and at the end.

:class:`CellRunner` takes a cell whose line the magics have already read (session, script,
``--with`` values, timeout, columns, ``-o``) and runs it: stream records and output appear live
in order (:class:`~hvmagic.display.LiveRenderer`, :class:`~hvmagic.fleet_display.FleetLiveDisplay`),
the result is bound to ``-o VAR`` and ``_vmps_result`` (a partial one too, when the run did not
complete), and a failure ends as one of :mod:`hvmagic.magic_errors`' short exceptions. The
magics build one per cell from their settings (``displaylimit``, ``show_streams`` …), so a
``%config`` change applies to the next cell.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from IPython.core.error import UsageError

from hvmagic import display as hvdisplay
from hvmagic import fleets
from hvmagic.errors import (
    EncodeError,
    HvMagicError,
    PipelineTimeoutError,
    RemoteError,
    SessionBrokenError,
    SessionBusyError,
    TransportError,
)
from hvmagic.fleet_display import FleetLiveDisplay
from hvmagic.fleets import Fleet, FleetResult
from hvmagic.frames import to_dataframe
from hvmagic.magic_args import parse_columns
from hvmagic.magic_errors import (
    PipelineStopped,
    PowerShellError,
    first_line,
    raise_if_broken,
    session_lost,
)
from hvmagic.registry import SessionEntry
from hvmagic.sessionlike import Result, SessionLike

#: where the default session's last :class:`~hvmagic.session.Result` is kept in the user namespace
LAST_RESULT_VAR = "_vmps_result"


@dataclass
class CellRunner:
    """Runs ``%%vmps`` cells and shows their output, with the magics' display settings.

    ``user_ns`` is the namespace results are bound in (``-o VAR``, :data:`LAST_RESULT_VAR`);
    the rest are the ``VmMagics`` settings of the same names.
    """

    user_ns: MutableMapping[str, Any]
    displaylimit: int = 20
    show_streams: Sequence[str] = hvdisplay.TEXT_STREAMS
    progress_style: str = "bar"
    feedback: bool = False
    default_columns: str = "default"

    # ------------------------------------------------------------------------ one session
    def run(self, entry: SessionEntry, script: str, *, parameters: dict[str, Any],
            timeout: float | None, columns: str | list[str], raw: bool, out_var: str | None,
            raise_on_error: bool) -> None:
        """Run ``script`` in ``entry``'s session with live display, then show and bind the
        result; raise when the pipeline failed (or wrote errors and ``raise_on_error``)."""
        session = entry.session
        where = out_var or f"{LAST_RESULT_VAR}.frame()"
        live = hvdisplay.LiveRenderer(
            show_streams=self.show_streams, progress_style=self.progress_style,
            show_output=lambda values: self._show_segment(
                values, columns, getattr(session, "ps_version", None), where
            ),
        )
        earlier = getattr(session, "last_result", None)
        try:
            result = self._run_with_live_display(session, script, parameters, timeout, live,
                                                 entry)
        except BaseException as exc:
            # whatever the outcome, nothing that arrived is lost: _vmps_result and -o get it
            self._bind_partial(_partial_result(session, exc, earlier), columns, raw, out_var)
            raise
        finally:
            live.finish()  # whatever happened, no progress bar stays behind
        self._finish_run(result, columns, raw, out_var, raise_on_error, live)

    def _bind_partial(self, result: Result | None, columns: str | list[str], raw: bool,
                      out_var: str | None) -> None:
        """Bind the partial result of a run that did not complete (timeout, Ctrl-C, error,
        broken session) to ``_vmps_result`` and the ``-o`` variable, and say it is partial."""
        if result is None:
            return
        self.user_ns[LAST_RESULT_VAR] = result
        if not out_var:
            return
        output = list(getattr(result, "output", []))
        # as a completed run binds: an empty frame when nothing arrived (not raw)
        value: Any = output if raw or output else _empty_frame()
        if not raw and output and not hvdisplay.is_text_output(output):
            try:
                value = result.frame(columns)
            except Exception:  # the objects themselves are still worth binding
                value = output
        self.user_ns[out_var] = value
        state = getattr(result, "state", "?")
        print(f"{out_var} holds the {len(output)} object(s) that arrived before the pipeline "
              f"ended ({state}): a partial result.")

    def _run_with_live_display(self, session: SessionLike, script: str,
                               parameters: dict[str, Any], timeout: float | None,
                               live: hvdisplay.LiveRenderer, entry: SessionEntry) -> Result:
        earlier = getattr(session, "last_result", None)
        try:
            return session.run(
                script, parameters=parameters or None, timeout=timeout, on_event=live.on_event
            )
        except KeyboardInterrupt as exc:
            live.finish()
            self._show_partial(_partial_result(session, exc, earlier), live)
            raise_if_broken(session, entry.alias, "the kernel was interrupted")
            print(f"Pipeline stopped (interrupted); session {entry.alias!r} is still usable.")
            raise PipelineStopped("the kernel was interrupted; the remote pipeline was stopped")\
                from None
        except PipelineTimeoutError as exc:
            live.finish()
            self._show_partial(exc.result, live)
            limit = f"the {timeout:g} s timeout" if timeout is not None else "its timeout"
            raise_if_broken(session, entry.alias, f"the pipeline ran past {limit}")
            raise PowerShellError(
                f"Pipeline stopped after {limit}; session {entry.alias!r} is still usable",
                result=exc.result,
            ) from None
        except RemoteError as exc:
            live.finish()
            self._show_partial(exc.result, live)
            record = exc.record if exc.record is not None else str(exc)
            live.show_error(record)
            # the error block above is the message; the closing line only says the cell failed
            # (a second copy of the message is noise, and the record stays on .record)
            others = len(getattr(exc.result, "errors", []) or [])
            also = f" and {others} other error(s)" if others else ""
            raise PowerShellError(
                f"the cell failed with a terminating error{also} (shown above)",
                record=exc.record, result=exc.result,
                errors=[*getattr(exc.result, "errors", []), record],
            ) from None
        except (SessionBrokenError, TransportError) as exc:
            live.finish()
            raise session_lost(entry.alias, exc) from None
        except SessionBusyError as exc:
            live.finish()
            raise UsageError(f"session {entry.alias!r} is busy: {first_line(exc)}") from None
        except EncodeError as exc:
            live.finish()
            raise UsageError(f"--with: {first_line(exc)}") from None
        except HvMagicError as exc:
            # anything else the session reports on purpose (a host prompt the notebook cannot
            # answer, a protocol error, a replay mismatch): one line, no traceback; details
            # that follow the first line (a diff, the script) are printed above it
            live.finish()
            details = str(exc).strip().splitlines()[1:]
            if details:
                print("\n".join(details))
            raise PowerShellError(first_line(exc)) from None

    def _finish_run(self, result: Result, columns: str | list[str], raw: bool,
                    out_var: str | None,
                    raise_on_error: bool, live: hvdisplay.LiveRenderer) -> None:
        live.show_missing_errors(list(result.errors))
        value = self._show_output(result, columns, raw, out_var, live)
        if out_var:
            self.user_ns[out_var] = value
        self.user_ns[LAST_RESULT_VAR] = result
        if self.feedback:
            hvdisplay.publish(hvdisplay.render_feedback(len(result.output),
                                                        getattr(result, "duration", None)))
        if result.had_errors and raise_on_error:
            count = len(result.errors)
            what = f"{count} error(s)" if count else f"the pipeline ended {result.state}"
            raise PowerShellError(
                f"{what} in the pipeline (shown above); use --no-raise or "
                "%config VmMagics.raise_on_error = False to continue past errors",
                result=result,
                errors=list(result.errors),
            )

    # ------------------------------------------------------------------------ a fleet
    def run_fleet(self, fleet: Fleet, script: str, *, parameters: dict[str, Any],
                  timeout: float | None) -> FleetResult:
        """Run ``script`` on every target of ``fleet``, its streams and one progress display
        live; on Ctrl-C show the status table, bind what arrived and raise
        :class:`PipelineStopped`. The caller closes the fleet."""
        live = FleetLiveDisplay(show_streams=self.show_streams,
                                progress_style=self.progress_style)
        try:
            return fleet.run(script, parameters or None, timeout, live.on_event,
                             live.on_progress)
        except fleets.FleetInterrupted as exc:
            self.user_ns[LAST_RESULT_VAR] = exc.result
            hvdisplay.publish(hvdisplay.render_frame(exc.result.status))
            raise PipelineStopped("the kernel was interrupted; every target's pipeline was "
                                  f"stopped ({LAST_RESULT_VAR} holds what arrived)") from None
        finally:
            live.finish()

    def finish_fleet(self, result: FleetResult, columns: str | list[str], out_var: str | None,
                     raise_on_error: bool) -> None:
        """Show the fleet's frame and status table, bind them, and raise when a target failed."""
        frame = result.frame(columns)
        hvdisplay.publish(hvdisplay.render_frame(frame, self.displaylimit,
                                                 bound_to=out_var or f"{LAST_RESULT_VAR}.frame()"))
        hvdisplay.publish(hvdisplay.render_frame(result.status))
        if out_var:
            self.user_ns[out_var] = frame
        self.user_ns[LAST_RESULT_VAR] = result
        if raise_on_error and not result.ok:
            raise PowerShellError(
                f"{len(result.failed)} of {len(result)} target(s) did not complete cleanly "
                "(status above); use --no-raise to continue past errors",
                result=result, errors=[e for t in result for e in t.result.errors],
            )

    # ------------------------------------------------------------------------ showing output
    def _show_partial(self, result: Result | None, live: hvdisplay.LiveRenderer) -> None:
        if result is None:
            return
        live.show_missing_errors(list(getattr(result, "errors", [])))
        output = list(getattr(result, "output", []))
        if output:
            self._show_output(result, parse_columns(self.default_columns), False, None, live)

    def _show_segment(self, values: list[Any], columns: str | list[str], ps_version: Any,
                      where: str) -> None:
        """One run of output shown in order among the stream records (LiveRenderer): lines of
        text, or a table with PowerShell's headers. Called while the pipeline runs, so it
        never raises: a table that cannot be built is said, not thrown into the run."""
        if hvdisplay.is_text_output(values):
            hvdisplay.publish(hvdisplay.render_text_output(values, self.displaylimit, ps_version))
            return
        if hvdisplay.is_format_output(values):
            hvdisplay.publish(hvdisplay.render_notice(hvdisplay.FORMAT_OUTPUT_NOTICE))
            return
        if hvdisplay.is_help_output(values):
            hvdisplay.publish(hvdisplay.render_help(values))
            return
        try:
            shown = to_dataframe(values, columns, ps_version=ps_version, labels=True)
        except Exception as exc:
            hvdisplay.publish(hvdisplay.render_notice(
                f"{len(values)} object(s) could not be tabulated here ({first_line(exc)}); "
                f"they are in {where}"
            ))
            return
        hvdisplay.publish(hvdisplay.render_frame(shown, self.displaylimit, bound_to=where))

    def _show_output(self, result: Result, columns: str | list[str], raw: bool,
                     out_var: str | None, live: hvdisplay.LiveRenderer | None = None) -> Any:
        values = list(result.output)
        # Output already shown in order, among stream records: show only what is left (the
        # last segment). Otherwise the whole result is one table, as before.
        in_order = live is not None and live.segments_shown > 0
        if live is not None:
            if in_order:
                live.flush_output()
            else:
                live.discard_output()
        if not values:
            return values if raw else _empty_frame()
        if hvdisplay.is_text_output(values):
            if not in_order:
                hvdisplay.publish(hvdisplay.render_text_output(
                    values, self.displaylimit, result.ps_version))
            return values
        if hvdisplay.is_format_output(values):
            # Format-Table/-List emit layout instructions, not data: a frame of them is noise
            if not in_order:
                hvdisplay.publish(hvdisplay.render_notice(hvdisplay.FORMAT_OUTPUT_NOTICE))
            return values
        if hvdisplay.is_help_output(values):
            if not in_order:
                hvdisplay.publish(hvdisplay.render_help(values))
            return values
        try:
            frame = result.frame(columns)
            # bound: property names and unscaled values; shown: PowerShell's headers (WS(M))
            shown = None if in_order else (
                result.frame(columns, labels=True) if "hvmagic_labels" in frame.attrs else frame
            )
        except (KeyError, ValueError) as exc:
            raise UsageError(f"--columns: {first_line(exc)}") from None
        if shown is not None:
            # the notice names where the hidden rows are: the -o variable, else the last Result
            where = out_var or f"{LAST_RESULT_VAR}.frame()"
            hvdisplay.publish(hvdisplay.render_frame(shown, self.displaylimit, bound_to=where))
        return values if raw else frame


def _partial_result(
    session: SessionLike, exc: BaseException, earlier: Result | None
) -> Result | None:
    """The Result a failed run left: the exception's own, else the session's latest result if
    this run made one (a Ctrl-C carries none; ``earlier`` tells an older result apart)."""
    result: Result | None = getattr(exc, "result", None)
    if result is not None:
        return result
    latest: Result | None = getattr(session, "last_result", None)  # an adopted object may lack it
    return latest if latest is not earlier else None


def _empty_frame() -> Any:
    import pandas as pd

    return pd.DataFrame()


__all__ = ["LAST_RESULT_VAR", "CellRunner"]
