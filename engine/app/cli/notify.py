"""`dondoc notify` and `dondoc outbox`: registered on engine.cli.app when engine.cli is imported."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Optional
from zoneinfo import ZoneInfo

import typer
from rich.table import Table

from engine import clock
from engine.app.cli.common import (CalOpt, DbOpt, JsonOpt, RulesOpt, _db_url, _load, _now, _session, app, cfg,
                                   dump_json, err, out, print_error, settings, sub_app)

outbox_app = sub_app("Hộp thư đi: các thư nhắc đã, đang và chưa gửi được.", no_args_is_help=False)
app.add_typer(outbox_app, name="outbox")


def _as_of(text: Optional[str], tz: str) -> datetime:
    """A date alone means the opening of that day's sending window (a midnight would send nothing)."""
    if text is None:
        return _now()
    try:
        moment = clock.parse_moment(text)
    except clock.BadDate as exc:
        raise typer.BadParameter(str(exc), param_hint="--as-of") from None
    if re.fullmatch(r"\s*(\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}/\d{4})\s*", text):
        start, _ = settings().delivery.window()
        moment = datetime.combine(moment.date(), start, tzinfo=ZoneInfo(tz))
    return moment


@app.command("notify")
def notify_cmd(as_of: Optional[str] = typer.Option(None, "--as-of", metavar="THỜI_ĐIỂM", help="Thời điểm gửi mô phỏng (yyyy-mm-ddTHH:MM; "
                                                   "chỉ ngày = giờ bắt đầu gửi của ngày đó). Mặc định: bây giờ."),
               rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt, db: Optional[str] = DbOpt,
               as_json: bool = JsonOpt) -> None:
    """Gửi các thư nhắc đến hạn (mỗi đơn vị một thư tổng hợp), chỉ trong giờ làm việc của ngày làm việc."""
    from engine.app.confirmations import link_maker
    from notifications.delivery import deliver

    pack = _load(rules, calendar_dir)
    now = _as_of(as_of, pack.info.timezone)
    smtp = settings().smtp
    with _session(db):   # opens (and migrates) the database, with the CLI's error message on failure
        pass
    rep = deliver(_db_url(db), pack, now, smtp=smtp, delivery=settings().delivery, links=link_maker(settings()))
    all_failed = rep.failed > 0 and rep.sent == 0 and rep.retry == 0
    if as_json:
        print(json.dumps(rep.as_dict(), ensure_ascii=False, indent=2))
        if all_failed:
            raise typer.Exit(1)
        return
    if not rep.sending_allowed:
        out.print(f"Không gửi: {rep.reason}.")
        return
    where = f"máy chủ {smtp.host}:{smtp.effective_port}" if smtp.host else f"thư mục {smtp.pickup_dir}/ (chưa cấu hình DONDOC_SMTP_HOST)"
    out.print(f"Gửi thư nhắc lúc {now:%d/%m/%Y %H:%M} qua {where}: đã gửi {rep.sent}, chờ gửi lại {rep.retry}, "
              f"không thành công {rep.failed}; bỏ {rep.dropped_notices} thông báo không còn cần nhắc; "
              f"{rep.new_deliveries} thư mới.")
    if rep.failed:
        out.print("Xem lý do: dondoc outbox --failed")
    if all_failed:   # nothing went out and nothing will by itself: a script or timer must notice
        err.print(f"Lỗi: cả {rep.failed} thư đều gửi không thành công (lỗi vĩnh viễn). Xem lý do: dondoc outbox --failed",
                  highlight=False, markup=False)
        raise typer.Exit(1)


@outbox_app.callback(invoke_without_command=True)
def outbox_list(ctx: typer.Context,
                state: Optional[list[str]] = typer.Option(
                    None, "--state", metavar="TRẠNG_THÁI",
                    help="Chỉ các thư ở trạng thái này: gửi (đã gửi), chờ (chờ gửi, chờ gửi lại), lỗi (gửi không "
                         "thành công), bỏ (không gửi); hoặc mã sent, pending, retry, failed, dropped. Lặp lại hoặc "
                         "viết cách nhau bằng dấu phẩy để chọn nhiều trạng thái."),
                unit: Optional[str] = typer.Option(None, "--unit", metavar="ĐƠN_VỊ",
                                                   help="Chỉ thư gửi đơn vị này (mã hoặc tên đơn vị)."),
                day: Optional[str] = typer.Option(None, "--day", metavar="NGÀY",
                                                  help="Chỉ thư gửi (hoặc, chưa gửi được, xử lý lần cuối) trong ngày "
                                                       "này, dạng dd/mm/yyyy."),
                failed: bool = typer.Option(False, "--failed", help="Chỉ các thư gửi không thành công (như --state lỗi)."),
                all_: bool = typer.Option(False, "--all", help="Mọi thư, kể cả thư không gửi vì không còn cần nhắc."),
                limit: int = typer.Option(500, "--limit", metavar="SỐ_THƯ", help="Số thư tối đa được liệt kê."),
                as_json: bool = JsonOpt, db: Optional[str] = DbOpt) -> None:
    """Liệt kê thư đã gửi, chờ gửi, chờ gửi lại và gửi không thành công (mới nhất trước), kèm thời điểm,
    tệp .eml (khi chưa cấu hình máy chủ SMTP) và lý do."""
    from engine.app import services

    if ctx.invoked_subcommand is not None:
        return
    rows = services.outbox_list(cfg(db=db), failed_only=failed, include_sent=all_, limit=limit, states=state,
                                unit=unit, day=day)
    if as_json:
        dump_json(rows)
        return
    what = [f"trạng thái {', '.join(state)}"] if state else (["gửi không thành công"] if failed else [])
    what += [f"đơn vị {rows[0]['recipient_name'] if rows else unit}"] if unit else []
    what += [f"ngày {day}"] if day else []
    t = Table(title="Hộp thư đi" + (f" ({'; '.join(what)})" if what else ""))
    for c in ("Số", "Nơi nhận", "Kênh", "Trạng thái", "Thời điểm", "Lần thử", "Gửi lại lúc", "Số mục", "Tệp",
              "Lý do"):
        t.add_column(c, overflow="fold")
    for r in rows:
        chan = "E-mail" if r["channel"] == "email" else f"Webhook {r['target'] or ''}"
        if r["kpi_summary"]:
            chan += " (tổng hợp chỉ tiêu)"
        t.add_row(str(r["id"]), str(r["recipient_name"]), chan, str(r["status_vi"]), str(r["at_vi"]),
                  str(r["attempts"]), str(r["next_attempt_vi"] or ""), str(len(r["notices"])),  # type: ignore[arg-type]
                  str(r["file_name"] or ""), str(r["reason"] or ""))
    out.print(t)
    by_state: dict[str, int] = {}
    for r in rows:
        by_state[str(r["status_vi"])] = by_state.get(str(r["status_vi"]), 0) + 1
    tally = f": {', '.join(f'{k.lower()} {v}' for k, v in by_state.items())}" if by_state else ""
    out.print(f"{len(rows)} thư{tally}." + (" Gửi lại: dondoc outbox retry SỐ" if any(r["status"] == "failed" for r in rows) else ""))


@outbox_app.command("retry")
def outbox_retry(ids: Optional[list[int]] = typer.Argument(None, metavar="SỐ_THƯ", help="Số thư (cột “Số” của dondoc outbox)."),
                 all_failed: bool = typer.Option(False, "--all-failed", help="Mọi thư gửi không thành công."),
                 actor: str = typer.Option("cli", "--by", metavar="NGƯỜI_GHI", help="Người yêu cầu gửi lại (ghi vào nhật ký)."),
                 db: Optional[str] = DbOpt, as_json: bool = JsonOpt) -> None:
    """Đưa thư gửi không thành công trở lại hàng chờ (giữ nguyên Message-ID), ví dụ sau khi sửa địa chỉ."""
    from engine.app import services

    res = services.outbox_retry(cfg(db=db), ids or [], _now(), all_failed, actor=actor)
    if as_json:
        print(json.dumps({"requeued": res.requeued, "errors": res.errors}, ensure_ascii=False))
    else:
        for p in res.errors:
            print_error(p)
        out.print(f"Đã đưa {len(res.requeued)} thư trở lại hàng chờ gửi"
                  + (f": {', '.join(map(str, res.requeued))}." if res.requeued else "."))
    if res.errors:
        raise typer.Exit(1)
