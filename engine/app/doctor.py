"""`dondoc doctor`: every check says what is wrong and what to do about it."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

from engine.app.config import Settings, config_file

CheckResult = tuple[bool | None, str, str]   # (ok / warning=None / failed, name, detail)


def run_checks(s: Settings, rules: Path | None, calendar_dir: Path | None, db: str | None,
               now: datetime) -> list[CheckResult]:
    """``s`` is the configuration the command already read (a bad one never gets this far)."""
    out: list[CheckResult] = []
    cf = config_file()
    out.append((True, "cấu hình", f"đọc từ {'tệp ' + str(cf) + ' và ' if cf else ''}biến môi trường DONDOC_*"))

    url = db or s.database.url
    try:
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        from engine.db import alembic_config, make_engine

        eng = make_engine(url)
        with eng.connect() as c:
            current = MigrationContext.configure(c).get_current_revision()
        head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
        eng.dispose()
        if current == head:
            out.append((True, "cơ sở dữ liệu", f"{_safe_url(url)} kết nối được, lược đồ ở phiên bản mới nhất ({head})"))
        elif current is None:
            out.append((None, "cơ sở dữ liệu", f"{_safe_url(url)} chưa có lược đồ; lệnh đầu tiên (dondoc sync/run) sẽ tạo"))
        else:
            out.append((None, "cơ sở dữ liệu", f"{_safe_url(url)} ở phiên bản {current}, mới nhất là {head}; "
                                               "dondoc sẽ tự nâng cấp khi chạy (nên sao lưu trước)"))
    except Exception as exc:
        out.append((False, "cơ sở dữ liệu", f"không kết nối được {_safe_url(url)}: {exc.__class__.__name__}: {exc}. "
                                            "Kiểm tra DONDOC_DATABASE_URL, máy chủ và quyền truy cập"))

    try:
        from engine.errors import RulePackInvalid
        from engine.kpi import kpi_check_errors
        from engine.rules_loader import load_pack

        pack = load_pack(rules or s.rules.path, calendar_dir or s.calendar.path)
        kerrs = kpi_check_errors(pack)
        if kerrs:
            raise RulePackInvalid(kerrs)
        out.append((True, "bộ quy tắc", f"{pack.info.name}: {len(pack.obligations)} nghĩa vụ, {len(pack.units)} đơn vị"))
        years = set(pack.calendar.overrides.years)
        if now.month >= 10 and now.year + 1 not in years:
            out.append((None, "lịch làm việc", f"calendar/VN.yaml chưa có năm {now.year + 1}: khi Bộ Nội vụ thông báo "
                                               "lịch nghỉ, hoán đổi ngày làm việc, hãy bổ sung"))
    except RulePackInvalid as exc:
        first = "; ".join(str(e) for e in exc.errors[:3])
        out.append((False, "bộ quy tắc", f"{len(exc.errors)} lỗi, ví dụ: {first}. Chạy `dondoc rules check` để xem đủ"))

    try:
        from notifications.templates import check_templates

        terrs = check_templates(s.delivery.templates_dir)
        out.append((not terrs, "mẫu thư", "hợp lệ" if not terrs else "; ".join(str(e) for e in terrs[:3])))
    except ImportError:
        pass

    smtp = s.smtp   # the very settings the sender uses
    if smtp.host:
        out.append(_smtp_check(smtp))
    else:
        target = Path(smtp.pickup_dir)
        try:
            target.mkdir(parents=True, exist_ok=True)
            probe = target / ".doctor"
            probe.write_text("ok")
            probe.unlink()
            out.append((None, "máy chủ thư", f"chưa cấu hình DONDOC_SMTP_HOST: thư được ghi thành tệp .eml trong {target}/"))
        except OSError as exc:
            out.append((False, "máy chủ thư", f"chưa cấu hình SMTP và không ghi được vào {target}: {exc}"))
    out.extend(golive_checks(s, rules, calendar_dir, db, now))
    out.extend(web_checks(s))
    out.append(inbox_check(s))
    return out


def inbox_check(s: Settings) -> CheckResult:
    """Log in to the reporting mailbox with the reader's own client and count what waits."""
    from engine.app.inbox.mailbox import Mailbox
    from engine.app.services import ServiceError

    cfg = s.inbox
    if not cfg.enabled:
        return (None, "hộp thư nhận báo cáo", "chưa cấu hình DONDOC_INBOX_HOST: báo cáo gửi qua thư điện tử phải "
                                              "ghi nhận bằng tay")
    try:
        with Mailbox(cfg) as box:
            waiting = len(box.pending())
    except ServiceError as exc:
        return (False, "hộp thư nhận báo cáo", exc.message)
    tls = "TLS" if cfg.security == "tls" else "STARTTLS"
    return (True, "hộp thư nhận báo cáo", f"{cfg.host}:{cfg.port_or_default} ({tls}), thư mục “{cfg.folder}”: "
                                          f"{waiting} thư chưa đọc, đọc mỗi {cfg.every_minutes} phút")


def web_checks(s: Settings) -> list[CheckResult]:
    """The console and the links in the reminders: what a unit will reach, and whether it is safe."""
    w = s.web
    res: list[CheckResult] = []
    if not w.serve:
        res.append((None, "bảng điều khiển web", "tắt trong `dondoc run` (DONDOC_WEB_SERVE=false); chạy riêng bằng `dondoc web`"))
    else:
        res.append((True, "bảng điều khiển web", f"`dondoc run` phục vụ tại {w.host}:{w.port}"))
    try:
        from engine.app import accounts

        if not accounts.has_users(s):
            res.append((None, "tài khoản", "chưa có tài khoản nào: tạo bằng `dondoc users add TÊN --role thu-ky`"))
    except Exception:  # noqa: BLE001 - the database check above already says what is wrong
        pass
    secret = w.secret_value()
    if secret is None:
        res.append((None, "đường dẫn xác nhận", "chưa đặt DONDOC_WEB_SECRET: thư nhắc không kèm đường dẫn để đơn vị "
                                                "báo đã gửi"))
    elif len(secret) < 32:
        res.append((False, "đường dẫn xác nhận", "DONDOC_WEB_SECRET quá ngắn (cần ít nhất 32 ký tự ngẫu nhiên, ví dụ "
                                                 "tạo bằng: python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"))
    elif w.public_url is None:
        res.append((None, "đường dẫn xác nhận", f"chưa đặt DONDOC_WEB_PUBLIC_URL: đường dẫn trong thư sẽ là {w.base_url}, "
                                                "đơn vị ở máy khác không mở được"))
    elif not w.public_url.startswith("https://"):
        res.append((None, "đường dẫn xác nhận", f"{w.public_url} không dùng HTTPS: đường dẫn và tệp báo cáo đi qua mạng "
                                                "không mã hóa; đặt máy chủ sau HTTPS"))
    else:
        res.append((True, "đường dẫn xác nhận", f"thư nhắc kèm đường dẫn tới {w.public_url}, hiệu lực {w.link_days} ngày"))
    return res


def _smtp_check(s) -> CheckResult:
    """Connect and log in with the very client the sender uses (notifications.transport.smtp_client)."""
    from notifications.transport import InsecureLogin, smtp_client

    async def probe() -> str:
        client = smtp_client(s, timeout=min(s.timeout, 10), login=False)
        await client.connect()
        try:
            if s.username:
                if not s.password:
                    return "thiếu DONDOC_SMTP_PASSWORD (mật khẩu chỉ đặt bằng biến môi trường)"
                await client.login(s.username, s.password_value)
            return ""
        finally:
            await client.quit()

    try:
        problem = asyncio.run(probe())
    except InsecureLogin as exc:
        return (False, "máy chủ thư", f"{s.host}:{s.effective_port}: {exc}")
    except Exception as exc:
        return (False, "máy chủ thư", f"không kết nối được {s.host}:{s.effective_port} ({exc.__class__.__name__}: {exc}); "
                                      "kiểm tra DONDOC_SMTP_HOST/PORT/SECURITY và tường lửa")
    if problem:
        return (False, "máy chủ thư", problem)
    tls = {"starttls": "STARTTLS", "tls": "TLS", "none": "không mã hóa"}[s.security]
    note = (" (đăng nhập qua kết nối không mã hóa: DONDOC_SMTP_ALLOW_PLAINTEXT_AUTH=true)"
            if s.sends_credentials_in_clear else "")
    return (True, "máy chủ thư", f"{s.host}:{s.effective_port} ({tls}) trả lời"
                                 f"{', đăng nhập được' if s.username else ''}{note}")


def _safe_url(url: str) -> str:
    """Never print a password that may sit in a database URL."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<URL không hợp lệ>"


def golive_checks(s: Settings, rules: Path | None, calendar_dir: Path | None, db: str | None,
                  now: datetime) -> list[CheckResult]:
    """Go-live: the installation day and tracking start, placeholder addresses, and how many digests
    the next sending window would send (a dry computation on a copy of the state; nothing is sent).
    Skipped quietly when the rules or the database are broken: the checks above already said so."""
    from engine.app import services
    from engine.errors import RulePackInvalid

    s = services.with_paths(services.with_database(s, db), rules, calendar_dir)
    try:
        pack = services.load_rules(s)
    except RulePackInvalid:
        return []
    res: list[CheckResult] = []
    bad = services.placeholder_addresses(s, pack)
    if bad.units:
        shown = "; ".join(f"{uid} ({', '.join(addrs)})" for uid, _, addrs in bad.units[:5])
        more = f" và {len(bad.units) - 5} đơn vị khác" if len(bad.units) > 5 else ""
        res.append((None, "địa chỉ thư", f"{len(bad.units)} đơn vị có địa chỉ giữ chỗ (example.org, localhost …) trong "
                                          f"units.yaml: {shown}{more}. Thư gửi tới đó không đến ai: thay bằng địa chỉ thật"))
    for what, addr in bad.sender:
        res.append((None, "địa chỉ gửi", f"{what}: {addr} là địa chỉ giữ chỗ; đặt địa chỉ thật của đơn vị"))
    if not bad.units and not bad.sender:
        res.append((True, "địa chỉ thư", "không có địa chỉ giữ chỗ (example.org, localhost …)"))
    try:
        info = services.peek_tracking(s, pack)     # read only: doctor during setup is not the go-live
        if info is None:
            start = s.rules.tracking_start
            res.append((True, "bắt đầu theo dõi",
                        "chưa ghi nhận ngày cài đặt: lần chạy đầu tiên (dondoc run, sync, status, evaluate, backlog) "
                        "sẽ ghi ngày đó; đôn đốc các báo cáo có hạn từ "
                        + (f"{start:%d/%m/%Y} (theo cấu hình DONDOC_TRACKING_START)" if start else
                           "ngày cài đặt (hoặc tracking_start của bộ quy tắc nếu muộn hơn)")))
        else:
            res.append((True, "bắt đầu theo dõi",
                        f"cài đặt ngày {info.installed_on:%d/%m/%Y}; đôn đốc các báo cáo có hạn từ "
                        + (f"{info.tracking_start:%d/%m/%Y} ({info.source_vi})" if info.tracking_start else "hôm nay")
                        + "; hạn trước đó: xem dondoc backlog"))
        f = services.next_window_forecast(s, pack, now)
    except services.ServiceError as exc:
        return res + [(False, "lượt gửi tới", exc.message)]
    except Exception as exc:  # noqa: BLE001 - a forecast must not hide the other checks
        return res + [(None, "lượt gửi tới", f"không tính được ({exc.__class__.__name__}: {exc})")]
    res.append((None if f.digests > 50 else True, "lượt gửi tới",
                f"khung giờ gửi mở lúc {f.opens_at:%H:%M %d/%m/%Y}: sẽ gửi {f.digests} thư tổng hợp tới {f.recipients} "
                f"người nhận ({f.notices} thông báo, trong đó {f.new_notices} do lượt đánh giá trước đó tạo ra)"
                + ("; nhiều thư cùng lúc: kiểm tra ngày bắt đầu theo dõi trước khi chạy" if f.digests > 50 else "")))
    return res
