"""QR codes go to terminals only; a PNG is a PNG."""

from __future__ import annotations

import io

import segno

from ladder.qr import print_qr, save_qr

URL = "http://192.168.1.5:1080/proxy.pac"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_qr_code_is_drawn_on_a_terminal_and_nothing_goes_elsewhere():
    terminal, redirected = Terminal(), io.StringIO()
    print_qr(URL, terminal)
    print_qr(URL, redirected)
    assert redirected.getvalue() == ""
    drawn = terminal.getvalue().splitlines()
    expected = io.StringIO()
    segno.make(URL).terminal(out=expected, compact=True)
    assert drawn == expected.getvalue().splitlines() and len(drawn) > 10
    assert set("".join(drawn)) <= {" ", "█", "▀", "▄"}, "compact: two modules a character"


def test_save_qr_writes_a_png(tmp_path):
    save_qr(URL, tmp_path / "pac.png")
    assert (tmp_path / "pac.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
