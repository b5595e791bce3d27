"""What a session is, for everything that uses one: :class:`SessionLike`, and the values its
calls return (:class:`Result` of a run, :class:`CopyResult` of a file copy).

Three kinds of session exist — a live :class:`~hvmagic.session.Session` (and the hop's
subclass), a :class:`~hvmagic.recording.RecordingSession` wrapping one, and a
:class:`~hvmagic.recording.ReplaySession` serving a recording — and the magics, the file copy
engine, fleets and helpers such as :func:`hvmagic.last_boot_time` take any of them. This module
sits below all three (it imports no session code), so each can be checked against the one
protocol (``tests/test_sessionlike.py`` has mypy do it) without an import cycle.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from hvmagic.clixml.values import (
    ErrorRecord,
    InformationalRecord,
    InformationRecord,
    ProgressRecord,
    PSVersion,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "RESULT_LISTS", "CopiedFile", "CopyProgress", "CopyResult", "OnEvent", "Result", "SessionLike",
]

#: ``on_event(stream, record)``: called live for every record of a run (see Session.run)
OnEvent = Callable[[str, Any], None]


#: stream name (:data:`hvmagic.clixml.STREAMS`) → the :class:`Result` list of its records
RESULT_LISTS = {
    "output": "output", "error": "errors", "warning": "warnings", "verbose": "verbose",
    "debug": "debug", "information": "information", "progress": "progress", "host": "host",
}


@dataclass
class Result:
    """Everything one :meth:`Session.run` produced."""

    output: list[Any] = field(default_factory=list)
    errors: list[ErrorRecord] = field(default_factory=list)
    warnings: list[InformationalRecord] = field(default_factory=list)
    verbose: list[InformationalRecord] = field(default_factory=list)
    debug: list[InformationalRecord] = field(default_factory=list)
    information: list[InformationRecord] = field(default_factory=list)
    progress: list[ProgressRecord] = field(default_factory=list)
    host: list[str] = field(default_factory=list)
    #: ``"Completed"``, ``"Failed"`` or ``"Stopped"`` (``"Running"`` only inside ``on_event``)
    state: str = "Running"
    #: seconds from sending the pipeline to its final state
    duration: float = 0.0
    #: the terminating error of a ``Failed`` pipeline
    terminating_error: ErrorRecord | None = None
    #: the guest's PowerShell version (:attr:`Session.ps_version`): :meth:`frame` picks the
    #: default columns of that PowerShell's views
    ps_version: PSVersion | None = field(default=None, repr=False, compare=False)

    @property
    def had_errors(self) -> bool:
        return bool(self.errors) or self.state == "Failed"

    def frame(self, columns: str | list[str] = "default", *, labels: bool = False) -> pd.DataFrame:
        """:attr:`output` as a DataFrame (see :func:`hvmagic.to_dataframe`): property names
        and unscaled values for analysis; ``labels=True`` for PowerShell's headers."""
        from hvmagic.frames import to_dataframe

        return to_dataframe(self.output, columns, ps_version=self.ps_version, labels=labels)

    def __repr__(self) -> str:
        counts = ", ".join(
            f"{len(getattr(self, name))} {name}"
            for name in RESULT_LISTS.values()
            if getattr(self, name)
        )
        return f"<Result {self.state} in {self.duration:.3f}s: {counts or 'nothing'}>"


@dataclass(frozen=True)
class CopyProgress:
    """Reported after each chunk: the current file and the totals of the whole copy."""

    source: str
    destination: str
    file_bytes_done: int
    file_bytes_total: int
    bytes_done: int
    bytes_total: int
    files_done: int
    files_total: int

    @property
    def percent(self) -> int:
        return 100 if self.bytes_total == 0 else int(100 * self.bytes_done / self.bytes_total)


@dataclass(frozen=True)
class CopiedFile:
    source: str
    destination: str
    size: int
    sha256: str


@dataclass
class CopyResult:
    files: list[CopiedFile] = field(default_factory=list)
    directories: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: things worth knowing that did not stop the copy (e.g. names Windows could not store)
    notes: list[str] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def mb_per_s(self) -> float:
        return self.bytes / (1 << 20) / self.seconds if self.seconds > 0 else 0.0

    def __repr__(self) -> str:
        return f"<CopyResult {len(self.files)} file(s), {self.bytes} bytes in {self.seconds:.2f} s>"


_S = TypeVar("_S", bound="SessionLike")


class SessionLike(Protocol):
    """A PowerShell session in a guest, live, recording or replayed.

    Read-only properties here are plain attributes in some implementations; both fit.
    """

    @property
    def name(self) -> str:
        """The guest's name (or the alias it was connected under)."""

    @property
    def description(self) -> str:
        """How the session reaches the guest, for messages (never holds a secret)."""

    @property
    def broken(self) -> bool:
        """True once the session can no longer run anything; connect again."""

    @property
    def closed(self) -> bool: ...

    @property
    def ps_version(self) -> PSVersion | None:
        """The guest's ``$PSVersionTable.PSVersion`` when known: picks default columns."""

    @property
    def last_result(self) -> Result | None:
        """The latest run's result, whatever its outcome."""

    def run(
        self,
        script: str,
        parameters: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        on_event: OnEvent | None = None,
    ) -> Result:
        """Run ``script`` in the guest's runspace (see :meth:`hvmagic.session.Session.run`)."""

    def stop(self) -> None:
        """Stop the running pipeline, from any thread."""

    def close(self) -> None: ...

    def copy_to(
        self,
        local: str | os.PathLike[str],
        remote: str,
        *,
        overwrite: bool = False,
        recurse: bool = False,
        chunk_size: int = ...,
        on_progress: Callable[[CopyProgress], None] | None = None,
    ) -> CopyResult:
        """Copy a local file or directory into the guest (see :mod:`hvmagic.filecopy`)."""

    def copy_from(
        self,
        remote: str,
        local: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        recurse: bool = False,
        chunk_size: int = ...,
        on_progress: Callable[[CopyProgress], None] | None = None,
    ) -> CopyResult:
        """Copy a guest file or directory to this machine (see :mod:`hvmagic.filecopy`)."""

    def __enter__(self: _S) -> _S: ...

    def __exit__(self, *exc_info: object) -> None: ...
