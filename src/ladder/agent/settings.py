"""What the member chose on the dashboard, kept in settings.json in the member's folder across restarts.

The dashboard's switches change a running agent; this file is how the
next run remembers them: whether Ladder is switched off (`connected`),
the exit picked (`exit`), whether this member shares and from which
country (`sharing`, `country`), and the sharing policy set on the page
(`share`, a [share] table, applied over ladder.toml's). A key never set is
absent, so the command line and ladder.toml decide as before: the
command line wins over what is kept here only where a flag was given
(see Agent). The file is the agent's own, written atomically; a value of
the wrong type (a hand edit gone wrong) is ignored with a warning rather
than stopping the agent.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ladder.config import write_file

log = logging.getLogger(__name__)
_TYPES: dict[str, type] = {"connected": bool, "exit": str, "sharing": bool, "country": str, "share": dict}


@dataclass
class Settings:
    path: Path
    values: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Settings:
        try:
            loaded = json.loads(path.read_text())
        except FileNotFoundError:
            return cls(path)
        except (OSError, ValueError) as exc:
            log.warning("ignoring %s (%s): the dashboard's choices start over", path, exc)
            return cls(path)
        if not isinstance(loaded, dict):
            log.warning("ignoring %s: not a JSON object", path)
            return cls(path)
        values = {}
        for key, value in loaded.items():
            if key in _TYPES and isinstance(value, _TYPES[key]):
                values[key] = value
            else:
                log.warning("ignoring %s in %s: not a known setting of the right type", key, path)
        return cls(path, values)

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, **values: Any) -> None:
        """Change and save at once: a switch on the page must survive a crash a second later."""
        self.values.update(values)
        try:
            write_file(self.path, json.dumps(self.values, indent=1).encode(), 0o600)
        except OSError as exc:
            log.warning("cannot save %s: %s", self.path, exc)
