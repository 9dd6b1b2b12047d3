"""The short fault run (issue 18): 100 streams of known content while every fault strikes once.

The network, the client and the faults are faultnet.py's (benchmarks/faults.py
runs the full 1,000 streams). Nothing may be lost: every stream arrives
whole, or fails in a way the client sees and arrives whole when retried;
both hubs' stores pass SQLite's integrity check and the ledger's verify
after every fault; no process logs a traceback.
"""

from __future__ import annotations

import json

from faultnet import FAULTS, MiB, run_faults

STREAMS, CAP, SEED, WORKERS, TIME_LIMIT = 100, 8 * MiB, 18, 4, 150


def test_a_hundred_streams_through_every_fault_lose_nothing(tmp_path):
    report = run_faults(tmp_path, STREAMS, CAP, 1, SEED, WORKERS, TIME_LIMIT)
    totals, shown = report["totals"], json.dumps(report, indent=1)[:6000]
    assert totals["lost"] == 0, f"streams came out truncated or corrupted, as if whole:\n{shown}"
    assert sorted(report["faults"]) == sorted((*FAULTS, "calm")), shown
    assert all(report["faults"][f]["injected"] == 1 for f in FAULTS), shown
    assert totals["streams_run"] == STREAMS, f"the run ran out of time:\n{shown}"
    assert totals["retried_ok"] == totals["failed-visibly"], f"a failed stream failed on retry:\n{shown}"
    assert not totals["store_problems"], shown
    assert not totals["errors"], shown
    assert not totals["log_problems"], shown
    assert all(report["faults"][f]["store_checks_passed"] >= 2 for f in FAULTS), shown
