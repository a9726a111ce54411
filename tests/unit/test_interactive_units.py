"""--interactive without a terminal: the app's stdin is its FIFO, output still via iomux."""

from __future__ import annotations

from rktd_less.stage1.units import AppUnit, app_service


def test_stdin_fifo_unit_lines() -> None:
    text = app_service(AppUnit(name="web", image_name="i", argv=("/bin/cat",), uid=0, gid=0,
                               stdin_fifo=True))
    assert "StandardInput=file:/rkt/iomux/web.stdin\n" in text
    assert "StandardOutput=file:/rkt/iomux/web\n" in text
    plain = app_service(AppUnit(name="web", image_name="i", argv=("/bin/cat",), uid=0, gid=0))
    assert "StandardInput=null\n" in plain


def test_terminal_mode_uses_the_console() -> None:
    text = app_service(AppUnit(name="sh", image_name="i", argv=("/bin/sh",), uid=0, gid=0,
                               interactive=True))
    assert "StandardInput=tty\n" in text and "TTYPath=/dev/console\n" in text
    assert "iomux@" not in text
