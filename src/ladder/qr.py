"""QR codes of what a phone must be told: a PAC URL, a share link.

A phone's camera is the shortest way into its settings. The code goes to a
terminal only, as block characters (two modules a character); redirected
output stays plain text that a script can read, and a PNG is for sending.
"""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

import segno


def print_qr(text: str, file: TextIO) -> None:
    """Draw `text` as a QR code on `file` if it is a terminal; elsewhere print nothing."""
    if file.isatty():
        segno.make(text).terminal(out=file, compact=True)


def save_qr(text: str, path: Path | str) -> None:
    """Write `text` as a QR code to a PNG file, big enough to scan from a screen."""
    segno.make(text).save(str(path), kind="png", scale=8)
