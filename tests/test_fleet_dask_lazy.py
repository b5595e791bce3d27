"""A lazy Dask run: every target's output stays on its worker, and ``frame(lazy=True)`` is a
``dask.dataframe`` over it, framed where the data is, equal to the frame an ordinary run
gives once computed."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

import hvmagic
from hvmagic.fleets import Target
from hvmagic.testing import FakeGuest
from hvmagic.testing.guest import HandlerContext
from tests.test_fleet import DASK_GUESTS, SCRIPT, dask_cluster  # noqa: F401 (a fixture)

dd = pytest.importorskip("dask.dataframe")


def _rows(ctx: HandlerContext) -> list[dict[str, Any]]:
    ctx.warning("listed")
    name = ctx.guest.state["name"]
    return [{"Name": f"{name}-{i}", "Size": i * 10, "Ok": i % 2 == 0} for i in range(3)]


def _other(ctx: HandlerContext) -> list[dict[str, Any]]:
    return [{"Name": "app1-0", "Owner": "ops"}]


def test_lazy_run_leaves_outputs_on_the_workers_and_frames_them_there(
    dask_cluster: tuple[Any, Any],  # noqa: F811
) -> None:
    client, _cluster = dask_cluster
    for name, handler in (("web1", _rows), ("db1", _rows), ("app1", _other)):
        guest = FakeGuest()
        guest.state["name"] = name
        guest.add_handler(SCRIPT, handler)
        DASK_GUESTS[name] = guest
    targets = [Target("web1", "hv01"), Target("db1", "hv02"), Target("app1", "hv03")]
    fl = hvmagic.fleet(targets, cluster=client)
    eager = fl.run(SCRIPT).frame()
    result = fl.run(SCRIPT, lazy=True)
    assert result.ok, result.status.to_string()
    # nothing of the output is here; everything else is
    assert [t.result.output for t in result] == [[], [], []]
    assert [t.remote_output for t in result] == [3, 3, 1]
    assert list(result.status["Output"]) == [3, 3, 1]
    assert [len(t.result.warnings) for t in result] == [1, 1, 0]

    lazy = result.frame(lazy=True)
    assert isinstance(lazy, dd.DataFrame)
    assert lazy.npartitions == 3
    assert list(lazy.columns) == list(eager.columns)
    # a column some targets lack is object (never Dask's default conversion to strings)
    assert str(lazy.dtypes["Size"]) == "object"
    computed = lazy.compute().reset_index(drop=True)
    assert computed.astype(object).where(computed.notna(), None).values.tolist() == (
        eager.astype(object).where(eager.notna(), None).values.tolist())
    assert result.frame().shape == eager.shape  # frame() computes the lazy frame
    # the same-shaped targets alone keep the types an ordinary run's frame has
    web_db = hvmagic.fleet(targets[:2], cluster=client)
    both_eager = web_db.run(SCRIPT).frame()
    both_lazy = web_db.run(SCRIPT, lazy=True).frame(lazy=True)
    for column in ("Size", "Ok"):
        assert both_lazy.dtypes[column] == both_eager.dtypes[column]
        assert list(both_lazy[column].compute()) == list(both_eager[column])

    copy = pickle.loads(pickle.dumps(result))  # a copy has what is here, not the handles
    assert [t.remote for t in copy] == [None, None, None]
    with pytest.raises(ValueError, match="needs a run whose outputs stayed on Dask workers"):
        copy.frame(lazy=True)
    result.release()
    with pytest.raises(ValueError, match="no output of this run is held"):
        result.frame(lazy=True)
