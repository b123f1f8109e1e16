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


def test_owner_tools_print_a_device_refusal_inert(tmp_path, capsys, monkeypatch):
    """What the device sends back may echo what an attacker wrote (a grant's terms): no escape reaches the
    terminal. Before: `doorkeep owner send-grant` printed the refusal's reason and detail as received."""
    from types import SimpleNamespace

    from doorkeep.tools import cmd_owner
    from doorkeep.tools.cli import main

    class Link:
        device_id = "dk-test"

        def send_grant(self, _grant: bytes) -> SimpleNamespace:
            return SimpleNamespace(ok=False, reason="bad\x1b]0;pwned\x07", detail="x\x1b[2Jy")

        def close(self) -> None:
            pass

    monkeypatch.setattr(cmd_owner, "_link", lambda _args: Link())
    (tmp_path / "g.json").write_bytes(b"{}")
    argv = ["owner", "send-grant", str(tmp_path / "g.json"), "--broker", "localhost", "--key", "k"]
    assert main(argv) == cmd_owner.EXIT_REFUSED
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err and err.startswith("doorkeep: dk-test refused the grant: bad")
    argv[2] = str(tmp_path / "missing.json")
    assert main(argv) == 1
    assert "grant" in capsys.readouterr().err  # a missing grant: one line, before any connection
