"""Long listings (`dondoc status` on a whole province, a five-week `simulate`) are printed as plain
aligned text: every row on its own line, the same title, columns and cells as the Rich table they
replace, data printed as text (never as markup, control characters neutralised), the status
colours kept on a terminal; short tables keep Rich's boxes."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from rich.table import Table
from rich.text import Text
from typer.testing import CliRunner

from engine.app.cli import app
from engine.app.cli.common import LONG_TABLE_ROWS, DondocConsole, plain_table

NOW = "2026-12-02T09:00"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def table(rows: int, cells=lambda i: (f"{i:03d}", f"đơn vị {i}", str(i * 7))) -> Table:
    t = Table(title="Danh sách thử")
    t.add_column("Số")
    t.add_column("Đơn vị")
    t.add_column("Điểm", justify="right")
    for i in range(rows):
        t.add_row(*cells(i))
    return t


def printed(t: Table, terminal: bool = False) -> str:
    buf = io.StringIO()
    con = DondocConsole(file=buf, soft_wrap=True, markup=False, highlight=False, force_terminal=terminal,
                        color_system="standard" if terminal else None, width=100)
    con.print(t)
    return buf.getvalue()


def test_a_long_table_is_one_aligned_line_per_row_with_its_title_and_header() -> None:
    n = LONG_TABLE_ROWS + 1
    lines = printed(table(n)).splitlines()
    assert lines[0] == "Danh sách thử"
    assert lines[1].split() == ["Số", "Đơn", "vị", "Điểm"] and set(lines[2].replace(" ", "")) == {"─"}
    body = lines[3:]
    assert len(body) == n
    for i, line in enumerate(body):
        assert line.startswith(f"{i:03d}  đơn vị {i} ")
        assert line.endswith(f" {i * 7}")
    assert len({len(line) for line in body}) == 1                  # the right-justified last column lines up
    assert len({line.index("đơn vị") for line in body}) == 1


def test_a_short_table_keeps_rich_boxes() -> None:
    out = printed(table(3))
    assert "┃" in out and "│ 001 │" in out


def test_cells_are_printed_as_text_never_as_markup_or_terminal_control() -> None:
    hostile = ["[bold red]Sở[/] [link=http://x]y[/link]", "Sở\x1b[2J xóa màn hình", "hai\ndòng", ":smile: 100%"]
    t = table(LONG_TABLE_ROWS + 1, lambda i: (str(i), hostile[i % 4], "1"))
    out = printed(t)
    assert "[bold red]Sở[/] [link=http://x]y[/link]" in out
    assert "\x1b" not in out and "Sở\ufffd[2J xóa màn hình" in out
    assert "hai dòng" in out and ":smile: 100%" in out
    assert len(out.splitlines()) == 3 + LONG_TABLE_ROWS + 1        # a newline in a cell does not add a line


def test_on_a_terminal_the_styles_are_kept_and_the_text_is_the_same() -> None:
    t = table(LONG_TABLE_ROWS + 1, lambda i: (str(i), "đơn vị", Text("Quá hạn", style="red")))
    on_terminal = printed(t, terminal=True)
    assert "\x1b[31m" in on_terminal
    assert ANSI.sub("", on_terminal) == printed(t)


def test_a_table_with_a_cell_that_is_not_text_is_left_to_rich() -> None:
    inner = Table("x")
    t = table(LONG_TABLE_ROWS + 1, lambda i: (str(i), inner if i == 5 else "a", "1"))
    assert plain_table(t) is None
    assert "┃" in printed(t)


@pytest.fixture
def status_env(seed_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The seed pack on a state synced for 2026 (tracking from 01/01/2026), as the benchmark runs it."""
    monkeypatch.setenv("DONDOC_TRACKING_START", "2026-01-01")
    monkeypatch.setenv("XDG_CACHE_HOME", str(seed_env / "cache"))
    r = CliRunner().invoke(app, ["--now", NOW, "sync"])
    assert r.exit_code == 0, r.output
    return seed_env


def test_status_of_the_seed_pack_shows_every_item_on_its_own_line(status_env: Path) -> None:
    r = CliRunner().invoke(app, ["--now", NOW, "status", "--as-of", "2026-12-02"])
    assert r.exit_code == 0, r.output
    data = json.loads(CliRunner().invoke(app, ["--now", NOW, "status", "--as-of", "2026-12-02", "--json"]).output)
    items = data["items"]
    assert len(items) > LONG_TABLE_ROWS and len(data["units"]) > LONG_TABLE_ROWS
    lines = r.output.splitlines()
    assert lines[0] == "Tình trạng nộp báo cáo đến 02/12/2026"
    header = lines[1]
    for col in ("Hạn nộp", "Báo cáo", "Kỳ", "Mã báo cáo / kỳ", "Đơn vị (mã)", "Tình trạng"):
        assert col in header
    rows = lines[3:3 + len(items)]
    at = {c: header.index(c) for c in ("Mã báo cáo / kỳ", "Đơn vị (mã)", "Tình trạng")}
    names: dict[str, str] = {}
    for item, line in zip(items, rows):
        due = "/".join(reversed(item["due"].split("-")))
        extra = f" ({item['working_days_late']} ngày làm việc)" if item["working_days_late"] else ""
        assert line.startswith(due + "  "), line
        assert line[at["Mã báo cáo / kỳ"]:].startswith(f"{item['obligation']} / {item['period']} "), line
        assert line[at["Đơn vị (mã)"]:].split("  ")[0].endswith(f"({item['unit']})"), line
        assert line[at["Tình trạng"]:] == item["status_vi"] + extra, line
        assert item["period_label"] in line
        names[item["unit"]] = line[at["Đơn vị (mã)"]:].split("  ")[0]
    assert lines[3 + len(items)] == "Tỷ lệ nộp đúng hạn theo đơn vị"
    rates = lines[3 + len(items) + 3:]
    assert len(rates) == len(data["units"])
    for uid, a in data["units"].items():
        name = names[uid].removesuffix(f" ({uid})")
        [line] = [ln for ln in rates if ln.startswith(name + "  ")]
        assert line.split()[-5:-1] == [str(a["due"]), str(a["on_time"]), str(a["late"]), str(a["missing"])]


def test_status_of_one_unit_is_still_a_rich_table(status_env: Path) -> None:
    r = CliRunner().invoke(app, ["--now", NOW, "status", "--as-of", "2026-12-02", "--unit", "so-tai-chinh"])
    assert r.exit_code == 0 and "┃" in r.output and "Sở Tài chính (so-tai-chinh)" in r.output, r.output
