"""Faults with nothing lost, the full run (issue 18): 1,000 streams through every fault, as JSON.

The network (hub A and peer hub B, an exit at each, a user at A and the
user's phone, Debian's trojan as a device of A, both behind a relay and a
router namespace, hub A's store on a 20 MiB tmpfs), the stream client and
checker (a seeded quarter of the streams through the phone's SOCKS5 port,
an eighth as Trojan over TLS spoken directly), and the faults (kill -9 an
exit, hub A, hub B, the user's agent; SIGTERM and start hub A; cut or pause
the member's link; 150 ms and 1 % loss on it; fill hub A's disk) are
tests/integration/faultnet.py's, which the CI test
(tests/integration/test_faults.py, 100 streams) runs too.

Needs root (namespaces, a TUN device, a tmpfs mount). Exits 1 if anything
was lost, a retry failed, a store or a log was not clean, or the time
limit cut the run short.

    python3 benchmarks/faults.py                    # 1000 streams, up to 64 MiB, each fault 5 times
    python3 benchmarks/faults.py --streams 200 --repeats 1 --cap-mib 8
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "integration"))
sys.path.insert(0, str(HERE))

from _common import machine_info  # noqa: E402 -- after the path to the test helpers
from faultnet import FAULTS, MiB, clean, run_faults  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--cap-mib", type=int, default=64, help="the largest stream (MiB)")
    parser.add_argument("--repeats", type=int, default=5, help="how many times each fault strikes")
    parser.add_argument("--workers", type=int, default=4, help="streams at a time")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--time-limit", type=float, default=1500, help="seconds for the whole run")
    parser.add_argument("--faults", default=",".join(FAULTS), help="which faults strike (comma-separated)")
    parser.add_argument("--keep", type=Path, help="a folder for the processes' logs (else a temporary one)")
    args = parser.parse_args()
    only = tuple(args.faults.split(","))
    if not set(only) <= set(FAULTS):
        parser.error(f"--faults: not a fault: {', '.join(sorted(set(only) - set(FAULTS)))}")
    with tempfile.TemporaryDirectory(prefix="ladder-faults-") as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        report = run_faults(root / "run", args.streams, args.cap_mib * MiB, args.repeats, args.seed,
                            args.workers, args.time_limit, only)
    report["clean"] = clean(report)
    report["date"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    report["machine"] = machine_info()
    print(json.dumps(report, indent=1))
    return 0 if report["clean"] else 1


if __name__ == "__main__":
    sys.exit(main())
