"""`dondoc run` (the background job) and `dondoc doctor`."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Optional

import typer
from rich.text import Text

from engine.app.cli.common import (STATE, CalOpt, DbOpt, RulesOpt, app, cfg, err, load, moment_opt, now, out,
                                   settings)
from engine.app.cli.deadlines import instances_table


@app.command("run")
def run(rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt, db: Optional[str] = DbOpt,
        templates: Optional[Path] = typer.Option(None, "--templates", metavar="THƯ_MỤC", help="Thư mục mẫu thư (mặc định: notifications/templates)."),
        sim_start: Optional[str] = typer.Option(None, "--sim-start", metavar="THỜI_ĐIỂM", help="Đồng hồ mô phỏng: thời điểm bắt đầu."),
        sim_rate: float = typer.Option(1.0, "--sim-rate", metavar="HỆ_SỐ", help="Đồng hồ mô phỏng: số giây mô phỏng mỗi giây thật."),
        once: bool = typer.Option(False, "--once", help="Chạy một lượt (đồng bộ, đánh giá, gửi) rồi thoát."),
        log_format: Optional[str] = typer.Option(None, "--log-format", metavar="text|json", help="Định dạng nhật ký vận hành: text hoặc json."),
        deliver_every: Optional[int] = typer.Option(None, "--deliver-every", metavar="PHÚT", min=1, help="Số phút (mô phỏng) giữa hai lượt gửi."),
        lease_ttl: Optional[float] = typer.Option(None, "--lease-ttl", metavar="GIÂY", min=1.0, help="Số giây: bản dự phòng tiếp quản khi bản chính im lặng chừng ấy."),
        days: int = typer.Option(14, "--days", metavar="SỐ_NGÀY", help="Số ngày tới liệt kê khi khởi động.")) -> None:
    """Công việc chính: chạy nền, nhắc hạn và gửi thông báo theo lịch (Ctrl+C hoặc SIGTERM để dừng)."""
    from engine.app import confirmations, ruleversions, services
    from engine.app.daemon import Daemon, DaemonConfig, install_signal_handlers, setup_logging
    from engine.app.inbox import reader as inbox_reader
    from engine.simclock import Clock

    s = cfg(rules, calendar_dir, db)
    if log_format:   # the option wins over the setting, for the console's messages too
        s = s.model_copy(update={"log": s.log.model_copy(update={"format": log_format})})
    setup_logging(s.log.format, s.log.level)
    start_text = sim_start or STATE.now_text
    start_at = moment_opt(start_text, "--sim-start") if start_text else None
    if sim_rate <= 0:
        raise typer.BadParameter("phải lớn hơn 0", param_hint="--sim-rate")
    clk = Clock(start_at, sim_rate)
    pack = load(rules, calendar_dir)
    moment = clk.now()
    if s.log.format == "json":
        # The journal gets stdout too: in JSON mode every line there must be JSON, so no table.
        import logging

        logging.getLogger("dondoc.daemon").info(
            "rules valid: %d obligations, %d units", len(pack.obligations), len(pack.units),
            extra={"event": "starting", "sim_now": moment.isoformat()})
    else:
        out.print(Text.assemble(("✓ Bộ quy tắc hợp lệ", "green"),
                                f": {len(pack.obligations)} nghĩa vụ, {len(pack.units)} đơn vị (thời điểm {moment:%d/%m/%Y %H:%M}"
                                f"{', đồng hồ mô phỏng ×' + str(sim_rate) if clk.simulated else ''})."))
        items = services.deadlines(s, pack, moment.date(), moment.date() + timedelta(days=days))
        out.print(instances_table(pack, items[:40], f"Hạn nộp trong {days} ngày tới"
                                  + (f" (40/{len(items)} dòng đầu)" if len(items) > 40 else "")))
    tdir = templates or s.delivery.templates_dir
    dcfg = DaemonConfig(rules_dir=s.rules.path, calendar_dir=s.calendar.path, db_url=s.database.url,
                        templates_dir=tdir, clock=clk,
                        lease_ttl=s.daemon.lease_ttl_seconds, evaluate_hour=s.daemon.evaluate_hour,
                        deliver_every_minutes=s.daemon.deliver_every_minutes, watch_interval=s.daemon.watch_interval,
                        standby_poll=s.daemon.standby_poll, smtp=s.smtp,
                        delivery=s.delivery.model_copy(update={"templates_dir": tdir}),
                        tracking_start=s.rules.tracking_start, links=confirmations.link_maker(s),
                        on_rules_loaded=lambda now: ruleversions.record_hand_edits(s, now),
                        read_inbox=(lambda pack, now: inbox_reader.fetch(s, pack, now)) if s.inbox.enabled else None,
                        inbox_every_minutes=s.inbox.every_minutes)
    if deliver_every is not None:
        dcfg.deliver_every_minutes = deliver_every
    if lease_ttl is not None:
        dcfg.lease_ttl = lease_ttl
    daemon = Daemon(dcfg)
    if once:
        daemon.run_once()
        return
    install_signal_handlers(daemon)
    console = _start_console(s, clk, daemon) if s.web.serve else None
    try:
        code = daemon.run()
    finally:
        if console is not None:
            console.stop()
    raise typer.Exit(code)


def _start_console(s, clk, daemon):
    """The web console in this process, on the daemon's clock and its live rules. A port in use (or
    any failure of the console) is logged and the daemon goes on without it."""
    import logging

    from engine.app import accounts
    from engine.app.web import server

    log = logging.getLogger("dondoc.web")
    try:
        sock = server.bind(s.web.host, s.web.port)
    except OSError as exc:
        log.warning("web console not started: %s:%s (%s); set DONDOC_WEB_PORT or DONDOC_WEB_SERVE=false",
                    s.web.host, s.web.port, exc.strerror or exc, extra={"event": "web_not_started"})
        if s.log.format != "json":   # in JSON mode every line of the journal is JSON: the log line says it
            err.print(f"Không mở được bảng điều khiển web tại {s.web.host}:{s.web.port} ({exc.strerror or exc}); "
                      "công việc chính vẫn chạy. Đổi cổng bằng DONDOC_WEB_PORT.")
        return None
    try:
        app_ = server.make_app(s, clk, provider=lambda: daemon.pack)
        console = server.BackgroundConsole(app_, sock)
        console.start()
    except Exception:  # noqa: BLE001 - never take the daemon down
        log.exception("web console failed to start; the daemon goes on without it", extra={"event": "web_failed"})
        sock.close()
        return None
    url = s.web.public_url or f"http://{'127.0.0.1' if s.web.host in ('0.0.0.0', '') else s.web.host}:{sock.getsockname()[1]}"
    log.info("web console at %s", url, extra={"event": "web_started", "url": url})
    if s.log.format != "json":
        out.print(f"Bảng điều khiển web: {url}")
        try:
            if not accounts.has_users(s):
                out.print("Chưa có tài khoản: tạo tài khoản đầu tiên bằng “.venv/bin/dondoc users add TÊN --role thu-ky”.")
        except Exception:  # noqa: BLE001 - a database problem is the daemon's to report
            pass
    return console


@app.command("doctor")
def doctor(rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt, db: Optional[str] = DbOpt) -> None:
    """Kiểm tra cấu hình, cơ sở dữ liệu, phiên bản lược đồ, máy chủ thư và bộ quy tắc; nói rõ cần sửa gì."""
    from engine.app.doctor import run_checks

    results = run_checks(settings(), rules, calendar_dir, db, now())
    bad = 0
    for ok, name, detail in results:
        mark = Text("✓", "green") if ok is True else (Text("!", "yellow") if ok is None else Text("✗", "red"))
        bad += ok is False
        out.print(Text.assemble(mark, f" {name}: {detail}"))
    raise typer.Exit(1 if bad else 0)
