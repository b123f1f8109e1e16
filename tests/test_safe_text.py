"""One helper makes attacker-written strings inert before they are printed (#14.14)."""

from __future__ import annotations

from doorkeep.device.safe_text import printable


def test_control_and_format_characters_are_escaped_visibly():
    assert printable("Det. Y") == "Det. Y"
    assert printable("Vordertür – 門") == "Vordertür – 門"
    evil = "PD\x1b]52;c;ZXZpbA==\x07\x1b[2K\rVERIFIED\u202egnp.exe\u2066\x7f\x85\u2028"
    out = printable(evil)
    assert out.isprintable()
    assert out == "PD\\x1b]52;c;ZXZpbA==\\x07\\x1b[2K\\x0dVERIFIED\\u202egnp.exe\\u2066\\x7f\\x85\\u2028"


def test_long_text_is_cut_and_marked():
    assert printable("x" * 500, max_len=10) == "x" * 10 + "…"
    assert printable(ValueError("bad\nthing")) == "bad\\x0athing"
