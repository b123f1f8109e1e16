"""`doorkeep bench`: one area that fails (a timeout on a busy machine) is named in one line and exits 1, and the
other areas' figures are still printed (a whole run is ~20 minutes; losing it to one area is not acceptable)."""

from __future__ import annotations

import argparse
import json
from types import SimpleNamespace

import pytest
from doorkeep.device.errors import ChannelTimeout
from doorkeep.tools import cmd_bench


def test_a_failing_area_is_named_and_the_others_are_kept(monkeypatch, capsys) -> None:
    def broken(quick: bool) -> dict[str, float]:
        raise ChannelTimeout("no answer from the device within 30 s")

    areas = {"bench_a": SimpleNamespace(run=lambda quick: {"a_ms": 1.0}), "bench_b": SimpleNamespace(run=broken),
             "bench_c": SimpleNamespace(run=lambda quick: {"c_ms": 3.0})}
    monkeypatch.setattr(cmd_bench, "BENCH_MODULES", tuple(areas))
    monkeypatch.setattr(cmd_bench.importlib, "import_module", lambda name: areas[name.rsplit(".", 1)[1]])
    rc = cmd_bench._bench(argparse.Namespace(json=True, quick=True, only=[]))
    out, err = capsys.readouterr()
    assert rc == 1 and json.loads(out) == {"a_ms": 1.0, "c_ms": 3.0}
    assert "doorkeep: bench b failed: timeout: no answer" in err and "Traceback" not in err


def test_an_unexpected_error_is_not_swallowed(monkeypatch) -> None:
    def bug(quick: bool) -> dict[str, float]:
        raise ZeroDivisionError

    monkeypatch.setattr(cmd_bench, "BENCH_MODULES", ("bench_x",))
    monkeypatch.setattr(cmd_bench.importlib, "import_module", lambda name: SimpleNamespace(run=bug))
    with pytest.raises(ZeroDivisionError):
        cmd_bench._bench(argparse.Namespace(json=True, quick=True, only=[]))
