"""Coverage-guided fuzzing of every target in targets.py under atheris, each in its own process.

    python3 fuzz/run.py --seed                     write the seed corpus (fuzz/corpus/<target>/)
    python3 fuzz/run.py [--runs N] [--max-seconds S] [--target NAME ...] [--jobs J] [--json]

Every target runs in a subprocess of its own (a crash or a hang takes only
that one down), under libFuzzer's own bounds: `-runs=N` and
`-max_total_time=S`, so each stops by count or by time, whichever comes
first. The seeds are read from fuzz/corpus/<target>/; what libFuzzer finds
on the way goes to fuzz/work/<target>/ (not committed), and an input that
crashes a target is kept as fuzz/regressions/<target>/crash-<sha1>, which
tests/protocol/test_fuzz_regressions.py replays for ever after. The report
is read from libFuzzer's last stats line (`#N DONE cov: C ft: F ...`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
_DONE = re.compile(rb"#(\d+)\s+DONE\s+cov: (\d+) ft: (\d+)")
_STATS = re.compile(rb"#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+)")
MAX_LEN = 4096  # bytes of one input: every message here that matters fits, signed records included
INPUT_TIMEOUT = 10  # seconds one input may take before libFuzzer calls it a hang


def child(name: str, libfuzzer_args: list[str]) -> None:
    """Inside the subprocess: instrument Ladder as it is imported, then hand the target to libFuzzer."""
    import logging

    import atheris

    logging.disable(logging.CRITICAL)  # the front logs every bad request: no crash, and slow by the million
    with atheris.instrument_imports(include=["ladder", "targets"]):
        import targets
    atheris.Setup([sys.argv[0], *libfuzzer_args], targets.TARGETS[name])
    atheris.Fuzz()


def seed() -> dict[str, int]:
    """Write each target's seeds as files named by their hash, removing seeds an encoder no longer makes;
    the count per target."""
    from seeds import seeds

    counts = {}
    for name, inputs in seeds().items():
        folder = HERE / "corpus" / name
        folder.mkdir(parents=True, exist_ok=True)
        wanted = {hashlib.sha1(data).hexdigest(): data for data in inputs}
        for stale in (p for p in folder.iterdir() if p.name not in wanted):
            stale.unlink()
        for file_name, data in wanted.items():
            (folder / file_name).write_bytes(data)
        counts[name] = len(inputs)
    return counts


def fuzz(name: str, runs: int, max_seconds: int) -> dict[str, object]:
    """One target's run in its own process: inputs, seconds, coverage and the crashes it kept."""
    work, corpus, kept = HERE / "work" / name, HERE / "corpus" / name, HERE / "regressions" / name
    for folder in (work, corpus, kept):
        folder.mkdir(parents=True, exist_ok=True)
    before = set(kept.iterdir())
    args = [f"-runs={runs}", f"-max_total_time={max_seconds}", f"-max_len={MAX_LEN}",
            f"-timeout={INPUT_TIMEOUT}", f"-artifact_prefix={kept}/", "-print_final_stats=1",
            str(work), str(corpus)]
    path = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    started = time.monotonic()
    # libFuzzer's own time bound stops the child; the margin only catches a child that hangs in start-up.
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", name, "--", *args],
                          capture_output=True, env=env, timeout=max_seconds + 120, check=False)
    seconds = time.monotonic() - started
    log = done.stderr
    (HERE / "work" / f"{name}.log").write_bytes(log[-200_000:])
    final = _DONE.findall(log) or _STATS.findall(log)
    inputs, cov, ft = (int(x) for x in final[-1]) if final else (0, 0, 0)
    crashes = sorted(str(p.relative_to(HERE)) for p in set(kept.iterdir()) - before)
    return {"target": name, "inputs": inputs, "seconds": round(seconds, 1), "cov": cov, "ft": ft,
            "crashes": crashes, "exit": done.returncode}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1_000_000, help="inputs per target (default 1000000)")
    parser.add_argument("--max-seconds", type=int, default=600, help="seconds per target at most")
    parser.add_argument("--target", action="append", help="only this target (repeatable)")
    parser.add_argument("--jobs", type=int, default=1, help="targets fuzzed at once")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--seed", action="store_true", help="write the seed corpus and exit")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.child:
        child(args.child, [a for a in rest if a != "--"])
        return 0
    sys.path.insert(0, str(HERE))
    if args.seed:
        print(json.dumps(seed()))
        return 0
    from targets import TARGETS

    names = args.target or list(TARGETS)
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        parser.error(f"unknown target {', '.join(unknown)} (known: {', '.join(TARGETS)})")
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        results = []
        for result in pool.map(lambda n: fuzz(n, args.runs, args.max_seconds), names):
            results.append(result)
            if not args.json:
                crashes = ", ".join(result["crashes"]) or "none"
                print(f"{result['target']:15} {result['inputs']:>9} inputs {result['seconds']:>7} s  "
                      f"cov {result['cov']:>5} ft {result['ft']:>6}  crashes: {crashes}", flush=True)
    if args.json:
        print(json.dumps({"runs": args.runs, "max_seconds": args.max_seconds, "targets": results}, indent=2))
    return 1 if any(r["crashes"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
