"""`dondoc inbox`: the reporting mailbox — read it now, see what waits to be sorted, sort it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from engine.app.cli.common import CalOpt, DbOpt, JsonOpt, RulesOpt, _load, _now, app, cfg, dump_json, out, sub_app
from engine.vi import fmt_num

inbox_app = sub_app("Hộp thư nhận báo cáo: báo cáo đơn vị gửi qua thư điện tử.", no_args_is_help=True)
app.add_typer(inbox_app, name="inbox")


@inbox_app.command("fetch")
def inbox_fetch(dry_run: bool = typer.Option(False, "--dry-run", help="Chỉ đọc và cho biết sẽ ghi nhận gì; không ghi "
                                             "vào cơ sở dữ liệu, không đánh dấu thư."),
                limit: Optional[int] = typer.Option(None, "--limit", min=1, max=5000, metavar="SỐ_THƯ",
                                                    help="Đọc nhiều nhất chừng này thư (mặc định: DONDOC_INBOX_BATCH)."),
                rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt, db: Optional[str] = DbOpt,
                as_json: bool = JsonOpt) -> None:
    """Đọc hộp thư nhận báo cáo ngay (thư khớp: “Đã gửi – chờ xác nhận”; chưa rõ: chờ phân loại)."""
    from engine.app.inbox.reader import fetch

    pack = _load(rules, calendar_dir)
    rep = fetch(cfg(rules=rules, calendar=calendar_dir, db=db), pack, _now(), dry_run=dry_run, limit=limit)
    if as_json:
        dump_json(dataclasses.asdict(rep))
        return
    for m in rep.messages:
        label = {"recorded": "Ghi nhận", "queued": "Cần phân loại", "ignored": "Bỏ qua",
                 "already": "Đã có"}.get(m.outcome, m.outcome)
        out.print(f"- {label}: {m.sender or 'không rõ người gửi'} – “{m.subject or '(không có tiêu đề)'}”: {m.reason}")
        for item in m.items:
            out.print(f"    • {item}")
    out.print(rep.summary())
    if rep.queued and not dry_run:
        out.print("Xem thư cần phân loại: dondoc inbox list")


@inbox_app.command("list")
def inbox_list(state: str = typer.Option("can-phan-loai", "--state", metavar="TRẠNG_THÁI",
                                         help="can-phan-loai (mặc định), da-ghi-nhan, bo-qua, da-phan-loai, "
                                              "khong-phai-bao-cao, tat-ca."),
               rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt, db: Optional[str] = DbOpt,
               as_json: bool = JsonOpt) -> None:
    """Các thư đã đọc từ hộp thư: mặc định là thư cần phân loại, kèm các báo cáo có thể khớp."""
    from engine.app.inbox import store

    states = {name: shown for name, _, shown in store.VIEWS}
    if state not in states:
        raise typer.BadParameter(f"“{state}” không phải trạng thái; dùng: {', '.join(states)}", param_hint="--state")
    pack = _load(rules, calendar_dir)
    mails = store.listing(cfg(rules=rules, calendar=calendar_dir, db=db), pack, states[state])
    if as_json:
        dump_json([dataclasses.asdict(m) for m in mails])
        return
    if not mails:
        out.print("Không có thư nào." if state != "can-phan-loai" else "Không có thư nào cần phân loại.")
        return
    for m in mails:
        who = f"{m.sender_name} <{m.sender}>" if m.sender_name else (m.sender or "không rõ người gửi")
        out.print(f"Thư số {m.number} – {m.received_at:%d/%m/%Y %H:%M} – {who}")
        out.print(f"  Tiêu đề: {m.subject or '(không có tiêu đề)'}")
        out.print(f"  {m.state_vi}: {m.reason}")
        if m.ref:
            out.print(f"  Số ký hiệu: {m.ref}")
        for f in m.files:
            extra = f" – {f['skipped']}" if f.get("skipped") else ""
            out.print(f"  Tệp: {f['name']} ({fmt_num(f['size'] / 1024, 0)} KB){extra}")
        for p in m.problems:
            out.print(f"  Lưu ý: {p}")
        if m.candidates and m.state == "queued":
            table = Table("Chọn", "Báo cáo có thể khớp", show_edge=False)
            for n, c in enumerate(m.candidates, 1):
                table.add_row(str(n), c.text)
            out.print(table)
        for item in m.items:
            out.print(f"  • {item}")
    if state == "can-phan-loai":
        out.print(f"{len(mails)} thư cần phân loại. Phân loại: dondoc inbox assign SỐ_THƯ --chon 1, hoặc "
                  "--unit … --obligation … --period …; không phải báo cáo: dondoc inbox dismiss SỐ_THƯ")


@inbox_app.command("assign")
def inbox_assign(number: int = typer.Argument(..., metavar="SỐ_THƯ", help="Số thư (của dondoc inbox list)."),
                 choose: Optional[list[int]] = typer.Option(None, "--chon", metavar="SỐ",
                                                            help="Báo cáo số mấy trong danh sách khả năng (lặp lại được)."),
                 unit: Optional[str] = typer.Option(None, "--unit", metavar="ĐƠN_VỊ", help="Mã đơn vị (khi tự chọn)."),
                 obligation: Optional[str] = typer.Option(None, "--obligation", metavar="BÁO_CÁO",
                                                          help="Mã báo cáo (khi tự chọn)."),
                 period: Optional[str] = typer.Option(None, "--period", metavar="KỲ",
                                                      help="Kỳ báo cáo, ví dụ “tháng 11/2026”, “quý IV/2026”."),
                 actor: str = typer.Option("cli", "--by", metavar="NGƯỜI_GHI", help="Người phân loại (ghi vào nhật ký)."),
                 rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt, db: Optional[str] = DbOpt,
                 as_json: bool = JsonOpt) -> None:
    """Phân loại một thư: ghi nhận đã nộp các báo cáo đã chọn, ngày nộp là ngày thư đến, kèm tệp đính kèm."""
    from engine.app.inbox import store
    from engine.app.services import InvalidInput

    pack = _load(rules, calendar_dir)
    s = cfg(rules=rules, calendar=calendar_dir, db=db)
    ids: list[int] = []
    if choose:
        view = store.one(s, pack, number)
        for n in choose:
            if not 1 <= n <= len(view.candidates):
                raise InvalidInput(f"thư số {number} có {len(view.candidates)} khả năng; không có số {n}")
            ids.append(view.candidates[n - 1].instance_id)
    if unit or obligation or period:
        if not (unit and obligation and period):
            raise InvalidInput("khi tự chọn cần đủ --unit, --obligation và --period")
        ids.append(store.instance_for(s, pack, obligation, unit, period, _now()))
    if not ids:
        raise InvalidInput("cần --chon SỐ (theo dondoc inbox list) hoặc --unit, --obligation và --period")
    res = store.assign(s, pack, number, ids, _now(), actor)
    if as_json:
        dump_json(dataclasses.asdict(res))
        return
    out.print(f"Thư số {number}: đã ghi nhận {len(res.items)} báo cáo đã nộp.")
    for item in res.items:
        out.print(f"  • {item}")


@inbox_app.command("dismiss")
def inbox_dismiss(number: int = typer.Argument(..., metavar="SỐ_THƯ", help="Số thư (của dondoc inbox list)."),
                  reason: str = typer.Option("", "--reason", metavar="LÝ_DO", help="Vì sao không phải báo cáo."),
                  actor: str = typer.Option("cli", "--by", metavar="NGƯỜI_GHI", help="Người phân loại (ghi vào nhật ký)."),
                  db: Optional[str] = DbOpt, as_json: bool = JsonOpt) -> None:
    """Đánh dấu một thư không phải báo cáo (vẫn lưu lại, không ghi nhận gì)."""
    from engine.app.inbox import store

    store.dismiss(cfg(db=db), number, reason, _now(), actor)
    if as_json:
        dump_json({"dismissed": number})
        return
    out.print(f"Thư số {number}: đã đánh dấu không phải báo cáo.")
