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
    return out


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
