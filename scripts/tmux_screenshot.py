#!/usr/bin/env python3
"""Renders a tmux pane to PNG: `capture-pane -e` (text with its SGR colours) turned into an
HTML page of one <pre>, photographed by headless Chromium. For the docs' screenshots of
`cpuprof top` (docs/top.md):

    scripts/tmux_screenshot.py SOCKET TARGET OUT.png

SOCKET is the tmux server's socket (`tmux -S SOCKET`), TARGET the pane (`top`).
"""
import html
import re
import subprocess
import sys
import tempfile
from pathlib import Path

# The xterm palette tmux reports for colours 0-15.
PALETTE = [
    "#000000", "#cd0000", "#00cd00", "#cdcd00", "#0000ee", "#cd00cd", "#00cdcd", "#e5e5e5",
    "#7f7f7f", "#ff0000", "#00ff00", "#ffff00", "#5c5cff", "#ff00ff", "#00ffff", "#ffffff",
]
FG, BG = "#d0d0d0", "#1c1c1c"


def colour256(n):
    if n < 16:
        return PALETTE[n]
    if n < 232:
        n -= 16
        steps = [0, 95, 135, 175, 215, 255]
        return "#%02x%02x%02x" % (steps[n // 36], steps[(n // 6) % 6], steps[n % 6])
    v = 8 + 10 * (n - 232)
    return "#%02x%02x%02x" % (v, v, v)


def to_html(text):
    """The pane's text with SGR escapes as styled spans."""
    state = {"fg": None, "bg": None, "bold": False, "dim": False, "rev": False}
    out = []

    def span(chunk):
        if not chunk:
            return
        fg, bg = state["fg"] or FG, state["bg"] or BG
        if state["rev"]:
            fg, bg = bg, fg
        style = f"color:{fg};background:{bg}"
        if state["bold"]:
            style += ";font-weight:bold"
        if state["dim"]:
            style += ";opacity:0.6"
        out.append(f'<span style="{style}">{html.escape(chunk)}</span>')

    pos = 0
    for m in re.finditer(r"\x1b\[([0-9;:]*)m", text):
        span(text[pos:m.start()])
        pos = m.end()
        codes = [int(c) if c else 0 for c in re.split("[;:]", m.group(1))] or [0]
        i = 0
        while i < len(codes):
            c = codes[i]
            if c == 0:
                state.update(fg=None, bg=None, bold=False, dim=False, rev=False)
            elif c == 1:
                state["bold"] = True
            elif c == 2:
                state["dim"] = True
            elif c == 7:
                state["rev"] = True
            elif c == 22:
                state["bold"] = state["dim"] = False
            elif c == 27:
                state["rev"] = False
            elif 30 <= c <= 37:
                state["fg"] = PALETTE[c - 30]
            elif 90 <= c <= 97:
                state["fg"] = PALETTE[c - 90 + 8]
            elif 40 <= c <= 47:
                state["bg"] = PALETTE[c - 40]
            elif 100 <= c <= 107:
                state["bg"] = PALETTE[c - 100 + 8]
            elif c == 39:
                state["fg"] = None
            elif c == 49:
                state["bg"] = None
            elif c in (38, 48) and i + 2 < len(codes) and codes[i + 1] == 5:
                state["fg" if c == 38 else "bg"] = colour256(codes[i + 2])
                i += 2
            elif c in (38, 48) and i + 4 < len(codes) and codes[i + 1] == 2:
                rgb = "#%02x%02x%02x" % tuple(codes[i + 2:i + 5])
                state["fg" if c == 38 else "bg"] = rgb
                i += 4
            i += 1
    span(text[pos:])
    return "".join(out)


def main():
    socket, target, png = sys.argv[1], sys.argv[2], Path(sys.argv[3]).resolve()
    cap = subprocess.run(
        ["tmux", "-S", socket, "capture-pane", "-e", "-p", "-t", target],
        check=True, capture_output=True, text=True,
    ).stdout
    size = subprocess.run(
        ["tmux", "-S", socket, "display-message", "-p", "-t", target,
         "#{pane_width} #{pane_height}"],
        check=True, capture_output=True, text=True,
    ).stdout.split()
    cols, rows = int(size[0]), int(size[1])
    lines = cap.rstrip("\n").split("\n")
    lines += [""] * (rows - len(lines))
    body = "\n".join(to_html(line) for line in lines[:rows])
    char_w, line_h = 8.4, 17
    width, height = int(cols * char_w) + 24, int(rows * line_h) + 24
    page = (
        "<!doctype html><meta charset=utf-8><style>"
        f"body{{margin:0;background:{BG}}}"
        f"pre{{margin:12px;font:14px/{line_h}px 'DejaVu Sans Mono',monospace;color:{FG}}}"
        f"</style><pre>{body}</pre>"
    )
    with tempfile.TemporaryDirectory() as tmp:
        page_path = Path(tmp) / "pane.html"
        page_path.write_text(page, encoding="utf-8")
        subprocess.run(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu",
             f"--user-data-dir={tmp}/profile", "--hide-scrollbars",
             f"--window-size={width},{height}", f"--screenshot={png}",
             page_path.as_uri()],
            check=True, capture_output=True,
        )
    print(png)


if __name__ == "__main__":
    main()
