"""The console's FastAPI application: routers, static files, security headers, Vietnamese error pages.

``create_app(ctx)`` is the one place the console is composed; `dondoc web` and `dondoc run` both
call it. No request ever ends in a traceback: every error becomes a Vietnamese page (the details
go to the log).
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from engine.app.services import ServiceError
from engine.app.web.context import RulesUnavailable, WebContext
from engine.app.web.render import Pages
from engine.app.web.security import CsrfFailed, Forbidden, LoginRequired, SecurityHeaders

log = logging.getLogger("dondoc.web")
STATIC = Path(__file__).resolve().parent / "static"

HTTP_MESSAGES = {
    400: ("Yêu cầu không hợp lệ", "Dữ liệu gửi lên không đúng dạng. Quay lại trang trước và thử lại."),
    403: ("Không được phép", "Bạn không có quyền thực hiện thao tác này."),
    404: ("Không tìm thấy trang", "Địa chỉ này không có trong hệ thống. Kiểm tra lại đường dẫn hoặc quay về trang chủ."),
    405: ("Thao tác không hợp lệ", "Trang này không nhận kiểu yêu cầu đó."),
    413: ("Tệp quá lớn", "Tệp gửi lên vượt quá dung lượng cho phép."),
}


def create_app(ctx: WebContext) -> FastAPI:
    app = FastAPI(title="dondoc", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.ctx = ctx
    app.state.pages = Pages()
    app.add_middleware(SecurityHeaders, hsts=ctx.settings.web.base_url.startswith("https://"))
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    from engine.app.web.routes import ROUTERS

    for router in ROUTERS:
        app.include_router(router)

    def page(request: Request, status: int, heading: str, message: str) -> Response:
        return app.state.pages.render(request, "error.html", status_code=status, title=heading, heading=heading,
                                      message=message)

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/dang-nhap?next={quote(target, safe='')}", status_code=303)

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> Response:
        return page(request, 403, "Không được phép", exc.message)

    @app.exception_handler(CsrfFailed)
    async def _csrf(request: Request, exc: CsrfFailed) -> Response:
        return page(request, 403, "Biểu mẫu không hợp lệ",
                    "Biểu mẫu đã hết hạn hoặc không gửi từ trang của hệ thống, nên không có gì được ghi. "
                    "Tải lại trang rồi gửi lại.")

    @app.exception_handler(RulesUnavailable)
    async def _rules(request: Request, exc: RulesUnavailable) -> Response:
        return page(request, 503, "Bộ quy tắc chưa dùng được",
                    "Bộ quy tắc trong thư mục rules/ đang có lỗi và chưa có phiên bản hợp lệ nào được nạp. "
                    "Chạy “dondoc rules check” để xem lỗi và sửa.")

    @app.exception_handler(ServiceError)
    async def _service(request: Request, exc: ServiceError) -> Response:
        return page(request, 400 if exc.exit_code != 2 or "cơ sở dữ liệu" not in exc.message else 503,
                    "Không thực hiện được", exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        heading, message = HTTP_MESSAGES.get(exc.status_code, ("Lỗi", "Không thực hiện được yêu cầu."))
        # A route's own reason is Vietnamese (always with diacritics); Starlette's own details
        # ("Too many files…", "Not Found") are English and never shown.
        if exc.status_code in (400, 403, 404) and isinstance(exc.detail, str) and not exc.detail.isascii():
            message = exc.detail
        return page(request, exc.status_code, heading, message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return page(request, 400, *HTTP_MESSAGES[400])

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> Response:
        log.exception("web: unhandled error on %s %s", request.method, request.url.path)
        return page(request, 500, "Đã có lỗi",
                    "Hệ thống gặp lỗi khi xử lý yêu cầu này; lỗi đã được ghi vào nhật ký. Không có thay đổi nào "
                    "được ghi dở dang. Thử lại sau, hoặc báo quản trị viên.")

    return app
