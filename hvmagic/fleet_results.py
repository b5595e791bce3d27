"""A fleet's targets and what they produced: :class:`Target`, :class:`TargetResult`,
:class:`FleetResult` (``frame()``, ``status``), :class:`FleetInterrupted`.

Everything here is plain data that pickles (it crosses Dask workers), except a lazy Dask run's
``remote`` handles, which stay with the client that made them. See :mod:`hvmagic.fleets`.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hvmagic.clixml.values import PSCredential
from hvmagic.errors import FleetError
from hvmagic.sessionlike import Result, SessionLike

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "STATES",
    "ConnectFunction",
    "CredentialSource",
    "CredentialValue",
    "FleetInterrupted",
    "FleetResult",
    "Resolver",
    "Target",
    "TargetResult",
    "frame_outcomes",
    "is_glob",
    "split_targets",
]

STATES = ("Completed", "Failed", "TimedOut", "Broken", "Unreachable", "Stopped", "NotStarted")

_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class Target:
    """One guest of a fleet: a VM ``name`` on Hyper-V ``host`` (``None``: this machine).

    ``options`` are extra keyword arguments for the connect function (``via``, ``executable``,
    ``configuration`` …); they take no part in equality: a VM is its host and name.
    """

    name: str
    host: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def label(self) -> str:
        """``name``, or ``host/name`` for a VM on a named host (unique within a fleet)."""
        return self.name if self.host is None else f"{self.host}/{self.name}"

    @property
    def key(self) -> tuple[str, str]:
        # Hyper-V compares VM and host names case-insensitively
        return ((self.host or "").casefold(), self.name.casefold())

    def __repr__(self) -> str:
        return f"Target({self.label!r})"


CredentialValue = PSCredential | str | None
CredentialSource = CredentialValue | Callable[[Target], CredentialValue]
ConnectFunction = Callable[..., SessionLike]
#: ``resolver(host, pattern, running_only=...)`` → the VM names on ``host`` matching ``pattern``
Resolver = Callable[..., list[str]]


def is_glob(text: str) -> bool:
    return any(char in _GLOB_CHARS for char in text)


def split_targets(spec: str) -> list[str]:
    """``"web*, db1"`` → ``["web*", "db1"]``."""
    return [part.strip() for part in spec.split(",") if part.strip()]


# --------------------------------------------------------------------------------------------
# per-target results


@dataclass
class TargetResult:
    """What one target produced in one fleet run; picklable (it crosses Dask workers)."""

    target: Target
    state: str = "NotStarted"
    #: the target's Result: complete, or what arrived before the failure (empty if none)
    result: Result = field(default_factory=Result)
    #: one line saying why the target did not complete (the terminating error's message …)
    error: str | None = None
    #: the exception class behind :attr:`error`, by name (exceptions are not kept: they may
    #: hold sessions and do not all survive pickling)
    error_type: str | None = None
    #: seconds from the start of this target's work (connect included) to its end
    duration: float = 0.0
    #: a lazy Dask run's output rows left on the worker (``None``: the output is here)
    remote_output: int | None = None
    #: a lazy Dask run's handle on the full result kept on the worker (never pickled)
    remote: Any = field(default=None, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def host(self) -> str | None:
        return self.target.host

    @property
    def ok(self) -> bool:
        """Completed without any error record."""
        return self.state == "Completed" and not self.result.errors

    @property
    def output_rows(self) -> int:
        """Rows of output, here or (lazy Dask run) left on the worker."""
        if self.remote_output is not None:
            return self.remote_output
        return sum(_row_count(v) for v in self.result.output)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["remote"] = None  # a handle on a worker's memory belongs to this client
        return state

    def without_output(self) -> TargetResult:
        """A copy whose result has every stream but the output (counted in ``remote_output``)."""
        result = copy.copy(self.result)
        result.output = []
        return dataclasses.replace(self, result=result, remote_output=self.output_rows)

    def __repr__(self) -> str:
        why = f": {self.error}" if self.error else ""
        return f"<TargetResult {self.target.label} {self.state}{why} {self.result!r}>"


def _row_count(value: Any) -> int:
    # to_dataframe enumerates one level of a list written as one object; rows must line up
    return len(value) if isinstance(value, list) else 1


def frame_outcomes(outcomes: Iterable[TargetResult], columns: str | list[str] = "default"
                   ) -> pd.DataFrame:
    """The outputs of ``outcomes`` framed together, ``VMName`` and ``HostName`` first."""
    import pandas as pd

    from hvmagic.frames import to_dataframe

    values: list[Any] = []
    names: list[str] = []
    hosts: list[str | None] = []
    for outcome in outcomes:
        output = outcome.result.output
        rows = sum(_row_count(v) for v in output)
        values.extend(output)
        names.extend([outcome.target.name] * rows)
        hosts.extend([outcome.target.host] * rows)
    frame = to_dataframe(values, columns)
    # objects relayed by a host hop may carry their own VMName/PSComputerName: ours wins,
    # it is the target the fleet ran on
    frame = frame.drop(columns=[c for c in ("VMName", "HostName") if c in frame.columns])
    frame.insert(0, "HostName", pd.Series(hosts, index=frame.index, dtype=object))
    frame.insert(0, "VMName", pd.Series(names, index=frame.index, dtype=object))
    return frame


class FleetResult:
    """Every target's outcome of one :meth:`Fleet.run`, in target order."""

    def __init__(self, targets: Iterable[TargetResult], duration: float = 0.0,
                 lazy_frame: Callable[[list[TargetResult], Any], Any] | None = None) -> None:
        self.targets: list[TargetResult] = list(targets)
        #: wall-clock seconds of the whole run
        self.duration = duration
        #: the backend's ``(outcomes, columns) -> dask DataFrame`` for a lazy run's outputs
        self._lazy_frame = lazy_frame

    def __len__(self) -> int:
        return len(self.targets)

    def __iter__(self) -> Iterator[TargetResult]:
        return iter(self.targets)

    def __getitem__(self, label: str) -> TargetResult:
        """The outcome for ``label`` (``name`` or ``host/name``; case-insensitive)."""
        wanted = label.casefold()
        matches = [t for t in self.targets if t.target.label.casefold() == wanted]
        if not matches:
            matches = [t for t in self.targets if t.target.name.casefold() == wanted]
        if len(matches) != 1:
            what = "no target" if not matches else f"{len(matches)} targets"
            raise KeyError(f"{what} named {label!r} in this fleet result")
        return matches[0]

    @property
    def results(self) -> dict[str, Result]:
        """``{label: Result}`` for every target (partial or empty where it failed)."""
        return {t.target.label: t.result for t in self.targets}

    @property
    def failed(self) -> list[TargetResult]:
        """Targets that did not complete cleanly (any state but Completed, or error records)."""
        return [t for t in self.targets if not t.ok]

    @property
    def ok(self) -> bool:
        return not self.failed

    def frame(self, columns: str | list[str] = "default", *, lazy: bool = False) -> Any:
        """Every target's output as one DataFrame with ``VMName`` and ``HostName`` first.

        The objects are framed together (one column set for the fleet, by PowerShell's default
        columns of each type) and each row is labelled with the VM and host it came from.

        ``lazy=True`` (a Dask run with ``run(..., lazy=True)``, whose outputs stayed on the
        workers): a ``dask.dataframe.DataFrame`` with one partition per target, framed on the
        worker that holds it; nothing crosses to the notebook until it is computed. Its columns
        are the union of the targets' (a column some targets lack, or whose dtype differs
        between them, is ``object``). A lazy run's ``frame()`` is that frame, computed.
        """
        remote = self._lazy_frame is not None and any(
            t.remote is not None for t in self.targets)
        if lazy or remote:
            if self._lazy_frame is None:
                raise ValueError(
                    "frame(lazy=True) needs a run whose outputs stayed on Dask workers: "
                    "hvmagic.fleet(..., cluster=client).run(script, lazy=True)"
                )
            frame = self._lazy_frame(self.targets, columns)
            return frame if lazy else frame.compute()
        return frame_outcomes(self.targets, columns)

    def release(self) -> None:
        """Let the Dask workers free the outputs a lazy run left there (``frame()`` then has
        only what is here)."""
        for outcome in self.targets:
            outcome.remote = None

    def __getstate__(self) -> dict[str, Any]:
        # a lazy run's frame function and futures belong to this client; a copy has what is here
        state = dict(self.__dict__)
        state["_lazy_frame"] = None
        return state

    @property
    def status(self) -> pd.DataFrame:
        """One row per target: VMName, HostName, State, Duration (s), Output, Errors, Error."""
        import pandas as pd

        rows = [
            {
                "VMName": t.target.name,
                "HostName": t.target.host,
                "State": t.state,
                "Duration": round(t.duration, 3),
                "Output": t.output_rows,
                "Errors": len(t.result.errors),
                "Error": t.error,
            }
            for t in self.targets
        ]
        columns = ["VMName", "HostName", "State", "Duration", "Output", "Errors", "Error"]
        return pd.DataFrame(rows, columns=columns)

    def raise_for_errors(self) -> None:
        """Raise :class:`~hvmagic.errors.FleetError` (carrying this result) unless every target
        completed without error records."""
        failed = self.failed
        if not failed:
            return
        shown = ", ".join(
            f"{t.target.label} ({t.state}"
            + (f": {t.error}" if t.error else f", {len(t.result.errors)} error(s)")
            + ")"
            for t in failed[:5]
        )
        more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
        raise FleetError(
            f"{len(failed)} of {len(self.targets)} target(s) did not complete cleanly: "
            f"{shown}{more}",
            result=self,
        )

    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for t in self.targets:
            counts[t.state] = counts.get(t.state, 0) + 1
        summary = ", ".join(f"{n} {state}" for state, n in counts.items()) or "no targets"
        return f"<FleetResult {len(self.targets)} target(s) in {self.duration:.3f}s: {summary}>"


class FleetInterrupted(KeyboardInterrupt):
    """Ctrl-C during :meth:`Fleet.run`: every running pipeline was stopped; ``result`` holds
    what arrived (``Stopped``/``NotStarted`` for the targets cut short)."""

    def __init__(self, message: str, result: FleetResult) -> None:
        super().__init__(message)
        self.result = result
