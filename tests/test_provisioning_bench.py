"""The provisioning bench runs and reports its three figures (values are recorded in BENCHMARKS.md, not asserted)."""

from __future__ import annotations

from doorkeep.tools.bench_provisioning import run


def test_bench_reports_figures():
    figures = run(quick=True)
    assert set(figures) == {"pair_exchange_ms", "config_apply_ms", "factory_reset_ms_per_clip"}
    assert all(v > 0 for v in figures.values())
