"""Every fuzz target on its seed corpus and on every input that once crashed it (fuzz/regressions/).

The targets (fuzz/targets.py) let through only the errors their parser is
documented to raise, so a target returning is the pass: an input kept here
that raises again is the crash it was kept for, come back. The seeds are
valid encodings, so they also show that each target reaches past its
parser's first check. Loaded by path (tests/fuzztargets.py); atheris is
not needed to replay.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fuzztargets import FUZZ, targets

INPUTS = sorted(p for kind in ("corpus", "regressions") for p in (FUZZ / kind).glob("*/*") if p.is_file())


def test_every_target_has_seeds_and_every_kept_input_names_a_target():
    seeded = {p.parent.name for p in INPUTS if p.parent.parent.name == "corpus"}
    assert seeded == set(targets.TARGETS)
    assert {p.parent.name for p in INPUTS} <= set(targets.TARGETS)


def _id(path: Path) -> str:
    return f"{path.parent.parent.name}/{path.parent.name}/{path.name[:12]}"


@pytest.mark.parametrize("path", INPUTS, ids=_id)
def test_target_survives_its_input(path):
    targets.TARGETS[path.parent.name](path.read_bytes())


def test_the_seeds_on_disk_are_the_encoders_seeds():
    # A changed encoder must be re-seeded (python3 fuzz/run.py --seed), or the fuzzer starts from stale bytes.
    from seeds import seeds

    on_disk = {p.read_bytes() for p in INPUTS if p.parent.parent.name == "corpus"}
    assert {d for inputs in seeds().values() for d in inputs} == on_disk
