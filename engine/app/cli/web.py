"""`dondoc web` (the console) and `dondoc users` (its accounts)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from engine.app.cli.common import (STATE, CalOpt, DbOpt, JsonOpt, RulesOpt, app, cfg, dump_json, err, moment_opt, now,
                                   out, print_error, sub_app)
from engine.vi import ROLES, fmt_moment

users_app = sub_app("Tài khoản của Văn phòng trên bảng điều khiển web (thư ký, lãnh đạo).")
app.add_typer(users_app, name="users")

USER_HELP = "Tên đăng nhập (chữ thường không dấu, ví dụ nguyen.van.a)."
ROLE_HELP = "Vai trò: thu-ky (ghi nhận, miễn, gửi lại, sửa quy tắc) hoặc lanh-dao (chỉ xem)."


def _password(from_stdin: bool) -> str:
    """The new password: from standard input (scripts) or typed twice, hidden."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return typer.prompt("Mật khẩu mới", hide_input=True, confirmation_prompt=True)


@users_app.command("add")
def users_add(username: str = typer.Argument(..., metavar="TÊN_ĐĂNG_NHẬP", help=USER_HELP),
              role: str = typer.Option("thu-ky", "--role", metavar="VAI_TRÒ", help=ROLE_HELP),
              name: str = typer.Option("", "--name", metavar="HỌ_TÊN", help="Họ tên hiển thị."),
              password_stdin: bool = typer.Option(False, "--password-stdin", help="Đọc mật khẩu từ đầu vào chuẩn (một dòng)."),
              db: Optional[str] = DbOpt) -> None:
    """Tạo tài khoản (mật khẩu ít nhất 10 ký tự, lưu dạng băm Argon2)."""
    from engine.app import accounts

    s = cfg(db=db)
    accounts.check_username(username)
    accounts.check_role(role)
    user = accounts.add_user(s, username, _password(password_stdin), role, now(), full_name=name)
    out.print(f"Đã tạo tài khoản “{user.username}” ({ROLES[user.role]}).")


@users_app.command("passwd")
def users_passwd(username: str = typer.Argument(..., metavar="TÊN_ĐĂNG_NHẬP", help=USER_HELP),
                 password_stdin: bool = typer.Option(False, "--password-stdin", help="Đọc mật khẩu từ đầu vào chuẩn (một dòng)."),
                 db: Optional[str] = DbOpt) -> None:
    """Đặt mật khẩu mới; mọi phiên đăng nhập đang mở của tài khoản kết thúc."""
    from engine.app import accounts

    s = cfg(db=db)
    user = accounts.set_password(s, username, _password(password_stdin), now())
    out.print(f"Đã đổi mật khẩu của “{user.username}”; các phiên đăng nhập cũ đã kết thúc.")


@users_app.command("disable")
def users_disable(username: str = typer.Argument(..., metavar="TÊN_ĐĂNG_NHẬP", help=USER_HELP), db: Optional[str] = DbOpt) -> None:
    """Khóa tài khoản (không xóa, để giữ nhật ký); mọi phiên đăng nhập kết thúc ngay."""
    from engine.app import accounts

    user = accounts.set_active(cfg(db=db), username, False, now())
    out.print(f"Đã khóa tài khoản “{user.username}”.")


@users_app.command("enable")
def users_enable(username: str = typer.Argument(..., metavar="TÊN_ĐĂNG_NHẬP", help=USER_HELP), db: Optional[str] = DbOpt) -> None:
    """Mở lại tài khoản đã khóa."""
    from engine.app import accounts

    user = accounts.set_active(cfg(db=db), username, True, now())
    out.print(f"Đã mở lại tài khoản “{user.username}”.")


@users_app.command("role")
def users_role(username: str = typer.Argument(..., metavar="TÊN_ĐĂNG_NHẬP", help=USER_HELP),
               role: str = typer.Argument(..., metavar="VAI_TRÒ", help=ROLE_HELP), db: Optional[str] = DbOpt) -> None:
    """Đổi vai trò của tài khoản."""
    from engine.app import accounts

    user = accounts.set_role(cfg(db=db), username, role, now())
    out.print(f"“{user.username}” giờ là: {ROLES[user.role]}.")


@users_app.command("list")
def users_list(db: Optional[str] = DbOpt, as_json: bool = JsonOpt) -> None:
    """Danh sách tài khoản."""
    from engine.app import accounts

    users = accounts.list_users(cfg(db=db))
    if as_json:
        dump_json([{"username": u.username, "name": u.full_name, "role": u.role, "active": u.active,
                    "last_login_at": u.last_login_at.isoformat() if u.last_login_at else None} for u in users])
        return
    if not users:
        out.print("Chưa có tài khoản nào. Tạo tài khoản đầu tiên: dondoc users add TÊN --role thu-ky")
        return
    t = Table("Tên đăng nhập", "Họ tên", "Vai trò", "Trạng thái", "Đăng nhập gần nhất")
    for u in users:
        t.add_row(u.username, u.full_name or "–", ROLES[u.role].split(" (")[0], "Đang dùng" if u.active else "Đã khóa",
                  fmt_moment(u.last_login_at))
    out.print(t)


@app.command("web")
def web(host: Optional[str] = typer.Option(None, "--host", metavar="ĐỊA_CHỈ", help="Địa chỉ lắng nghe (mặc định 127.0.0.1)."),
        port: Optional[int] = typer.Option(None, "--port", metavar="CỔNG", min=1, max=65535, help="Cổng (mặc định 8057)."),
        rules: Optional[Path] = RulesOpt, calendar_dir: Optional[Path] = CalOpt, db: Optional[str] = DbOpt) -> None:
    """Bảng điều khiển web cho Văn phòng và trang xác nhận cho đơn vị (dừng bằng Ctrl+C)."""
    from engine.app import accounts
    from engine.app.web import server
    from engine.simclock import Clock

    s = cfg(rules, calendar_dir, db)
    web_cfg = s.web.model_copy(update={k: v for k, v in (("host", host), ("port", port)) if v is not None})
    s = s.model_copy(update={"web": web_cfg})
    start = moment_opt(STATE.now_text, "--now") if STATE.now_text else None
    try:
        sock = server.bind(web_cfg.host, web_cfg.port)
    except OSError as exc:
        print_error(f"không mở được cổng {web_cfg.host}:{web_cfg.port} ({exc.strerror or exc}); cổng đang được dùng? "
                    "Chọn cổng khác bằng --port hoặc DONDOC_WEB_PORT.")
        raise typer.Exit(2) from None
    app_ = server.make_app(s, Clock(start) if start else None)
    app_.state.ctx.pack()      # rules checked before the address is announced (a broken pack: its errors)
    actual = sock.getsockname()[1]
    shown = s.web.public_url or f"http://{'127.0.0.1' if web_cfg.host in ('0.0.0.0', '') else web_cfg.host}:{actual}"
    out.print(f"Bảng điều khiển web: {shown}  (Ctrl+C để dừng)")
    if not accounts.has_users(s):
        out.print("Chưa có tài khoản: tạo tài khoản đầu tiên bằng “dondoc users add TÊN --role thu-ky”.")
    sys.stdout.flush()
    server.serve_forever(app_, sock)
