"""Mẫu thư nhắc hạn (Jinja2) – Văn phòng sửa được; xem README.md trong thư mục này.

The .j2 files beside this module are the shipped templates. ``check_templates`` compiles and
test-renders them (or an override directory) so ``dondoc rules check`` catches a broken edit.
"""

from notifications.render import TEMPLATE_NAMES, check_templates, sample_digests

__all__ = ["TEMPLATE_NAMES", "check_templates", "sample_digests"]
