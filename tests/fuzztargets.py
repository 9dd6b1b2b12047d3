"""fuzz/targets.py, loaded by path for the tests that replay or drive its targets (fuzz/ is no package).

The module is registered as `targets`, the name fuzz/seeds.py imports it by.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

FUZZ = Path(__file__).resolve().parents[1] / "fuzz"


def _load():
    if "targets" in sys.modules:
        return sys.modules["targets"]
    sys.path.insert(0, str(FUZZ))
    spec = importlib.util.spec_from_file_location("targets", FUZZ / "targets.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["targets"] = module
    spec.loader.exec_module(module)
    return module


targets = _load()
