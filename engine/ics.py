"""A unit's deadlines as an iCalendar file it can import into any calendar client."""

from __future__ import annotations

from datetime import datetime, timedelta

from icalendar import Alarm, Calendar, Event

from engine.instances import Instance
from engine.rules_loader import RulePack


def instance_uid(inst: Instance, pack_id: str) -> str:
    """Stable across exports, so a re-import updates events instead of duplicating them."""
    return f"{inst.obligation}.{inst.unit}.{inst.period}@{pack_id}.dondoc"


def build_ics(pack: RulePack, unit_id: str, instances: list[Instance], stamp: datetime) -> bytes:
    unit = pack.units[unit_id]
    cal = Calendar()
    cal.add("prodid", "-//dondoc//Hạn báo cáo//VI")
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("x-wr-calname", f"Hạn báo cáo – {unit.name}")
    cal.add("x-wr-timezone", pack.info.timezone)
    for inst in instances:
        ob = pack.obligations[inst.obligation]
        recipient = pack.units[inst.recipient].name
        ev = Event()
        ev.add("uid", instance_uid(inst, pack.info.id))
        ev.add("dtstamp", stamp)
        ev.add("summary", f"Hạn nộp: {ob.title} – {inst.period_label}")
        ev.add("dtstart", inst.due)
        ev.add("dtend", inst.due + timedelta(days=1))
        lines = [f"Nơi nhận: {recipient}", f"Căn cứ: {ob.basis.text()}", f"Kỳ báo cáo: {inst.period_label}"]
        if inst.cutoff_start and inst.cutoff_end:
            lines.append(f"Số liệu tính từ {inst.cutoff_start:%d/%m/%Y} đến {inst.cutoff_end:%d/%m/%Y}")
        lines.append(f"Hạn nộp: hết ngày {inst.due:%d/%m/%Y}")
        if inst.due != inst.due_unrolled:
            lines.append(f"(Ngày {inst.due_unrolled:%d/%m/%Y} là ngày nghỉ nên hạn chuyển sang {inst.due:%d/%m/%Y})")
        ev.add("description", "\n".join(lines))
        ev.add("categories", ["Báo cáo"])
        ev.add("transp", "TRANSPARENT")
        alarm = Alarm()
        alarm.add("action", "DISPLAY")
        alarm.add("description", f"Sắp đến hạn: {ob.title} – {inst.period_label}")
        # 08:00 three days before the (all-day) due date.
        alarm.add("trigger", timedelta(days=-3, hours=8))
        ev.add_component(alarm)
        cal.add_component(ev)
    return cal.to_ical()
