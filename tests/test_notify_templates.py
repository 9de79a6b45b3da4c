"""Templates: Vietnamese rendering, autoescaping, and check_templates for `dondoc rules check`."""

from __future__ import annotations

from datetime import date, datetime

from engine.clock import TZ
from engine.errors import RuleError
from notifications.render import SHIPPED_DIR, Renderer, ngay, sample_digests
from notifications.templates import check_templates


def test_weekday_and_date_in_vietnamese() -> None:
    assert ngay(date(2026, 11, 30)) == "Thứ Hai, 30/11/2026"
    assert ngay(date(2026, 11, 29)) == "Chủ nhật, 29/11/2026"
    assert [ngay(date(2026, 11, d)).split(",")[0] for d in range(23, 30)] == [
        "Thứ Hai", "Thứ Ba", "Thứ Tư", "Thứ Năm", "Thứ Sáu", "Thứ Bảy", "Chủ nhật"]


def test_shipped_templates_pass_the_check() -> None:
    assert check_templates() == []
    assert check_templates(SHIPPED_DIR) == []


def test_digest_groups_by_status_and_escapes_html() -> None:
    unit_digest, esc_digest, _ = sample_digests()
    r = Renderer().render(unit_digest)
    assert r.subject == "[Đôn đốc báo cáo] Sở Khoa học và Công nghệ: 1 báo cáo quá hạn, 1 đến hạn hôm nay, 1 sắp đến hạn"
    t = r.text
    assert t.index("CHƯA HOÀN THÀNH – QUÁ HẠN") < t.index("ĐẾN HẠN HÔM NAY") < t.index("SẮP ĐẾN HẠN")
    assert "Hạn nộp: Thứ Hai, 30/11/2026" in t and "Căn cứ: Kế hoạch hành động, mục V.7" in t
    assert "quá hạn 48 ngày làm việc" in t and "còn 3 ngày làm việc" in t
    assert "Sở Tài chính &lt;Phòng Kế hoạch &amp; Ngân sách&gt;" in r.html
    assert "<Phòng Kế hoạch" not in r.html
    e = Renderer().render(esc_digest)
    assert "Sở Tài chính <Phòng Kế hoạch & Ngân sách>: quá hạn 27 ngày làm việc" in e.text
    assert "Sở Khoa học và Công nghệ: quá hạn 1 ngày làm việc" in e.text


def test_check_reports_syntax_error_with_file_and_line(tmp_path) -> None:
    (tmp_path / "digest.txt.j2").write_text("Kính gửi {{ recipient.name }}\n{% for s in sections %}\n{{ s.title }\n",
                                            encoding="utf-8")
    errs = check_templates(tmp_path)
    assert len(errs) == 1 and isinstance(errs[0], RuleError)
    assert errs[0].file.endswith("digest.txt.j2") and errs[0].line == 3 and "cú pháp" in errs[0].message


def test_check_reports_unknown_variable_when_rendering(tmp_path) -> None:
    (tmp_path / "digest.html.j2").write_text("<p>{{ recipient.name }}</p>\n<p>{{ recipent.name }}</p>\n", encoding="utf-8")
    errs = check_templates(tmp_path)
    assert [(e.file.endswith("digest.html.j2"), e.line) for e in errs] == [(True, 2)]
    assert "recipent" in errs[0].message and "dữ liệu mẫu" in errs[0].message


def test_check_reports_misnamed_override_and_empty_subject(tmp_path) -> None:
    (tmp_path / "digest.text.j2").write_text("x", encoding="utf-8")
    (tmp_path / "digest.subject.j2").write_text("{# trống #}\n", encoding="utf-8")
    msgs = sorted(e.message for e in check_templates(tmp_path))
    assert any("không được dùng" in m for m in msgs) and any("tiêu đề thư rỗng" in m for m in msgs)


def test_override_directory_replaces_only_the_files_it_has(tmp_path) -> None:
    (tmp_path / "digest.subject.j2").write_text("Nhắc báo cáo – {{ recipient.name }}", encoding="utf-8")
    r = Renderer(tmp_path).render(sample_digests()[0])
    assert r.subject == "Nhắc báo cáo – Sở Khoa học và Công nghệ"
    assert "Kính gửi: Sở Khoa học và Công nghệ" in r.text          # shipped body still used


def test_broken_template_at_send_time_keeps_the_digest_for_retry(tmp_path, sqlite_url, minipack) -> None:
    from engine.db import session
    from engine.sync import sync_instances
    from notifications.delivery import deliver
    from notifications.config import DeliveryConfig, SmtpConfig
    from tests.support import add_notice, instance

    now = datetime(2026, 11, 25, 9, 0, tzinfo=TZ)
    with session(sqlite_url) as s:
        sync_instances(s, minipack, now)
        add_notice(s, instance(s, "nam-skhcn", "skhcn", "2026"), "remind-3")
        s.commit()
    bad = tmp_path / "tpl"
    bad.mkdir()
    (bad / "digest.txt.j2").write_text("{{ nope.x }}", encoding="utf-8")
    cfg = SmtpConfig(host=None, pickup_dir=tmp_path / "out")
    rep = deliver(sqlite_url, minipack, now, smtp=cfg, delivery=DeliveryConfig(), renderer=Renderer(bad))
    assert rep.retry == 1 and not (tmp_path / "out").exists()
    rep = deliver(sqlite_url, minipack, now.replace(hour=10), smtp=cfg, delivery=DeliveryConfig())
    assert rep.sent == 1 and len(list((tmp_path / "out").glob("*.eml"))) == 1


def test_serialisation_is_exactly_what_the_email_generator_writes() -> None:
    from email import policy

    from notifications.mime import address, build_email, to_bytes

    r = Renderer().render(sample_digests()[2])
    msg = build_email(r, delivery_key="k", message_id="<x.dondoc@vptu.example.org>",
                      sender=address("Hệ thống đôn đốc báo cáo", "dondoc@vptu.example.org"),
                      to=[address("Ban Chỉ đạo Trung ương về phát triển khoa học, công nghệ, đổi mới sáng tạo và "
                                  "chuyển đổi số", "a@example.org"), address("Sở Tài chính", "b@example.org")],
                      reply_to=address("Văn phòng Tỉnh ủy", "vp@example.org"), date=datetime(2026, 11, 25, 9, tzinfo=TZ))
    data = to_bytes(msg)
    assert data == msg.as_bytes(policy=policy.SMTP)
    assert data.isascii() and all(len(line) <= 78 for line in data.split(b"\r\n"))
