"""A fleet run in the notebook: one progress display over the targets, streams per target.

:class:`FleetLiveDisplay` is what ``%%vmps web*,db1`` hands :meth:`hvmagic.fleets.Fleet.run` as
``on_event`` and ``on_progress``:

* each target's stream records go to its own :class:`~hvmagic.display.LiveRenderer`, every line
  labelled ``[target]`` (PowerShell's ``Invoke-Command`` labels remote output by computer name in
  the same spirit);
* progress is **one** display (:class:`FleetProgressView`): a bar over the targets — done of
  total, failures counted, how many run — and under it each running target's own
  ``Write-Progress`` activities, labelled with the target. A target's activities leave the
  display when the target finishes, as PowerShell removes a pipeline's progress at its end; the
  whole display goes when the run ends (the status table then says how every target ended).

Updates are throttled like a single session's progress (:class:`~hvmagic.display.ProgressView`):
a fleet of hundreds of targets, each writing progress in a loop, does not flood the frontend, and
at most :data:`MAX_TARGETS` targets' activities are shown at once.
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from hvmagic import display as hvdisplay
from hvmagic.fleet_events import FleetProgress

__all__ = ["MAX_TARGETS", "FleetLiveDisplay", "FleetProgressView", "prefixed"]

MimeBundle = dict[str, str]

#: targets whose own activities are shown at once (the others are counted in one line)
MAX_TARGETS = 10


def prefixed(bundle: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """A stream bundle labelled with the target it came from (every text line, and the HTML)."""
    labelled = dict(bundle)
    if isinstance(labelled.get("text/plain"), str):
        labelled["text/plain"] = "\n".join(
            prefix + line for line in labelled["text/plain"].split("\n"))
    if isinstance(labelled.get("text/html"), str):
        labelled["text/html"] = (f'<span class="hvmagic-target">{html.escape(prefix)}</span>'
                                 + labelled["text/html"])
    return labelled


def _bar(percent: int, width: int = 30) -> str:
    filled = round(width * max(0, min(100, percent)) / 100)
    return "[" + "#" * filled + "." * (width - filled) + "]"


class _TargetSink:
    """The display sink of one target's :class:`~hvmagic.display.ProgressView`: its bundle
    becomes that target's part of the fleet's one display."""

    def __init__(self, view: FleetProgressView, label: str) -> None:
        self._view = view
        self._label = label

    def show(self, bundle: MimeBundle) -> None:
        self._view.set_target(self._label, bundle)

    def clear(self) -> None:
        self._view.set_target(self._label, None)


class FleetProgressView:
    """The fleet's progress display: the bar over the targets, then each target's activities.

    Feed it :class:`~hvmagic.fleet_events.FleetProgress` snapshots (:meth:`update`, an
    ``on_progress`` callback) and give each target's ``ProgressView`` the sink from
    :meth:`target_sink`. ``style`` is ``"bar"``, ``"text"`` or ``"none"`` as for a single
    session. ``sink`` defaults to an updatable notebook display, or one terminal line (the
    summary) outside a kernel.
    """

    def __init__(
        self,
        style: str = "bar",
        sink: hvdisplay.DisplaySink | None = None,
        *,
        min_interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if style not in ("bar", "text", "none"):
            raise ValueError(f"progress style must be bar, text or none, not {style!r}")
        self.style = style
        if sink is None and style != "none":
            sink = (hvdisplay.DisplayHandleSink() if hvdisplay.in_kernel()
                    else hvdisplay.TerminalLineSink())
        self._sink = sink
        self._terminal = isinstance(sink, hvdisplay.TerminalLineSink)
        self._progress: FleetProgress | None = None
        self._targets: dict[str, MimeBundle] = {}
        self._lock = threading.RLock()
        self._min_interval = min_interval
        self._clock = clock
        self._last_shown: float | None = None
        self._forced_in_interval = 0
        self._finished = False
        #: how many times the display was shown or updated
        self.updates = 0

    @property
    def progress(self) -> FleetProgress | None:
        """The last snapshot given."""
        return self._progress

    @property
    def target_labels(self) -> list[str]:
        """The targets whose activities are in the display now, in the order they came."""
        return list(self._targets)

    def target_sink(self, label: str) -> hvdisplay.DisplaySink:
        return _TargetSink(self, label)

    def update(self, progress: FleetProgress) -> None:
        if self.style == "none":
            return
        with self._lock:
            counts_changed = self._progress is None or (
                (progress.done, progress.failed) != (self._progress.done, self._progress.failed))
            self._progress = progress
            self._publish(force=counts_changed)

    def set_target(self, label: str, bundle: MimeBundle | None) -> None:
        """``label``'s own progress display is now ``bundle`` (``None``: it has none)."""
        if self.style == "none":
            return
        with self._lock:
            if bundle is None:
                if self._targets.pop(label, None) is None:
                    return
                self._publish(force=True)
                return
            new = label not in self._targets
            self._targets[label] = bundle
            self._publish(force=new)

    def finish(self) -> None:
        """The run ended: remove the display."""
        with self._lock:
            self._targets.clear()
            if self._sink is not None and self.updates and not self._finished:
                self._sink.clear()
            self._finished = True

    # internals ------------------------------------------------------------------------------
    def _publish(self, *, force: bool) -> None:
        if self._sink is None or self._finished:
            return
        now = self._clock()
        within = self._last_shown is not None and now - self._last_shown < self._min_interval
        if within and force:
            self._forced_in_interval += 1  # a flood of changes is throttled all the same
            force = self._forced_in_interval <= hvdisplay.FORCED_UPDATES
        if within and not force:
            return
        if not within:
            self._forced_in_interval = 0
        self._last_shown = now
        self._sink.show(self.render())
        self.updates += 1

    def _summary(self) -> tuple[str, int]:
        progress = self._progress
        if progress is None:
            return "Fleet: starting", 0
        return f"Fleet: {progress}", progress.percent

    def render(self) -> MimeBundle:
        """The bundle for the current state."""
        summary, percent = self._summary()
        text_lines = [f"{summary} {_bar(percent)} {percent}%"]
        if self._terminal:
            return {"text/plain": text_lines[0]}
        progress = self._progress
        done, total = (progress.done, progress.total) if progress else (0, 0)
        failed = progress.failed if progress else 0
        failures = (f' <span class="hvmagic-fleet-failed" style="color:#b00">{failed} failed'
                    "</span>" if failed else "")
        html_parts = [
            '<div class="hvmagic-progress-activity hvmagic-fleet-summary">'
            f"<b>Fleet</b> {html.escape(str(progress) if progress else 'starting')}"
            f' <progress value="{done}" max="{max(total, 1)}"></progress> {percent}%'
            f"{failures}</div>"
        ]
        shown = list(self._targets.items())[:MAX_TARGETS]
        for label, bundle in shown:
            prefix = f"[{label}] "
            text_lines.extend(prefix + line for line in bundle.get("text/plain", "").split("\n"))
            html_parts.append(
                f'<div class="hvmagic-fleet-target" data-target="{html.escape(label)}"'
                ' style="margin-left:1.5em">'
                f'<span class="hvmagic-target">{html.escape(prefix)}</span>'
                f'{bundle.get("text/html", "")}</div>'
            )
        hidden = len(self._targets) - len(shown)
        if hidden > 0:
            more = f"… and {hidden} more target(s) with progress"
            text_lines.append(more)
            html_parts.append(f'<div class="hvmagic-progress-more">{html.escape(more)}</div>')
        text = "\n".join(text_lines)
        if self.style == "text":
            return {"text/plain": text,
                    "text/html": f'<pre class="hvmagic-progress">{html.escape(text)}</pre>'}
        return {"text/plain": text,
                "text/html": '<div class="hvmagic-progress hvmagic-fleet">'
                             + "".join(html_parts) + "</div>"}


class FleetLiveDisplay:
    """``on_event`` and ``on_progress`` for a fleet cell; :meth:`finish` when the run ends.

    ``show_streams``/``progress_style``: as the magics are configured. ``publish_bundle``
    shows a labelled stream bundle; ``progress_sink`` is where the one progress display goes
    (default: see :class:`FleetProgressView`).
    """

    def __init__(
        self,
        *,
        show_streams: Iterable[str] = hvdisplay.TEXT_STREAMS,
        progress_style: str = "bar",
        publish_bundle: Callable[[MimeBundle], None] = hvdisplay.publish,
        progress_sink: hvdisplay.DisplaySink | None = None,
    ) -> None:
        self.show_streams = list(show_streams)
        self.progress_style = progress_style
        self._publish_bundle = publish_bundle
        self.progress = FleetProgressView(progress_style, progress_sink)
        #: one renderer per target that sent anything, by label
        self.renderers: dict[str, hvdisplay.LiveRenderer] = {}

    def _renderer(self, label: str) -> hvdisplay.LiveRenderer:
        live = self.renderers.get(label)
        if live is None:
            prefix = f"[{label}] "
            live = self.renderers[label] = hvdisplay.LiveRenderer(
                show_streams=self.show_streams, progress_style=self.progress_style,
                publish_bundle=lambda bundle: self._publish_bundle(prefixed(bundle, prefix)),
                progress_sink=self.progress.target_sink(label),
            )
        return live

    def on_event(self, target: Any, stream: str, record: Any) -> None:
        self._renderer(target.label).on_event(stream, record)

    def on_progress(self, progress: FleetProgress) -> None:
        target = progress.target
        if target is not None and progress.state not in (None, "Running"):
            live = self.renderers.get(target.label)
            if live is not None:
                live.finish()  # its pipeline ended: its activities leave the display
        self.progress.update(progress)

    def finish(self) -> None:
        for live in self.renderers.values():
            live.finish()
        self.progress.finish()
