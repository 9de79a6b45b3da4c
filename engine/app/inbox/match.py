"""Which unit, obligation and period a received mail answers, from data the caller passes in.

Why pure: the reader knows the database (open instances, digests by Message-ID); this module only
decides, so every decision is a test on plain values. Two ways in:
* a reply: In-Reply-To/References name a digest dondoc sent (its Message-ID is deterministic,
  ``notifications.mime.message_id_for(deliveries.key, domain)``, stored in ``deliveries.message_id``):
  the digest's unit and its items that are still open (narrowed to the period the subject names,
  when it names one of them);
* otherwise the sender's address → the units listing it in ``contacts``; the periods in the subject
  and the attachment names; the obligation by the words of its title (weighted overlap).
One (unit, obligation, period) open for that unit → ``confident``; several → ``ambiguous``; none →
``none``; an auto-reply or bounce → ``ignored``. ``reason`` is one Vietnamese line for the queue.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from engine.app.inbox.classify import kind
from engine.app.inbox.clues import PeriodMention, TitleIndex, features, periods_in, so_ky_hieu
from engine.app.inbox.model import InboundMail, normalise_id
from engine.periods import fold, label_for_key
from engine.rules_loader import RulePack
from engine.vi import fmt_date

InstanceKey = tuple[str, str, str]          # (obligation, unit, period key): unique in ``instances``
Status = Literal["confident", "ambiguous", "none", "ignored"]

CONFIDENT = 0.45      # a title this well covered by the text names the obligation …
MARGIN = 0.15         # … when the next one is at least this far behind
PLAUSIBLE = 0.2       # below this a title is not offered as a candidate (unless the period decides)
MAX_CANDIDATES = 10


@dataclass(frozen=True)
class OpenItem:
    """An instance still owed (not closed, active): what the caller reads from ``instances``."""
    unit: str
    obligation: str
    period: str
    due: date
    instance_id: int | None = None
    earliest: date | None = None    # the first day a report for it can be dated (a later period: not yet)

    @property
    def key(self) -> InstanceKey:
        return (self.obligation, self.unit, self.period)


@dataclass(frozen=True)
class DigestRef:
    """A digest dondoc sent: its recipient unit and the unit's own items in it (``unit_links`` of
    the delivery, or its delivery_items → notices with ``notices.unit == deliveries.recipient``)."""
    unit: str
    items: tuple[InstanceKey, ...]
    sent_on: date | None = None


@dataclass(frozen=True)
class MatchContext:
    """The data a match needs. ``digests``: Message-ID (any spelling; normalised here) → DigestRef."""
    open_items: Sequence[OpenItem]
    digests: Mapping[str, DigestRef] = field(default_factory=dict)
    on: date | None = None        # the day the mail arrived: equal candidates nearest to it come first


@dataclass(frozen=True)
class Candidate:
    item: OpenItem
    score: float                              # title words found, 0..1 (1.0 for a reply's items)

    def text(self, pack: RulePack) -> str:
        """“Sở Tài chính – Báo cáo tháng … – Tháng 11/2026 (hạn 30/11/2026)”: names, never ids."""
        unit = pack.units.get(self.item.unit)
        ob = pack.obligations.get(self.item.obligation)
        return (f"{unit.name if unit else self.item.unit} – {ob.title if ob else self.item.obligation} – "
                f"{label_for_key(self.item.period)} (hạn {fmt_date(self.item.due)})")


@dataclass(frozen=True)
class Match:
    status: Status
    via: Literal["reply", "sender", "none"]
    candidates: tuple[Candidate, ...]         # best first; for ``confident``: what to mark
    reason: str                               # Vietnamese, one line
    so_ky_hieu: str | None = None
    units: tuple[str, ...] = ()               # the units the sender (or the digest) stands for
    periods: tuple[str, ...] = ()             # period keys (or labels) the text names

    @property
    def items(self) -> tuple[OpenItem, ...]:
        return tuple(c.item for c in self.candidates)


# ── per-pack indexes (a batch of a thousand messages builds them once) ─────────────────────────
def _indexes(pack: RulePack) -> tuple[dict[str, list[str]], TitleIndex]:
    def build() -> tuple[dict[str, list[str]], TitleIndex]:
        by_addr: dict[str, list[str]] = {}
        for u in pack.units.values():
            for c in u.contacts:
                by_addr.setdefault(c.casefold(), []).append(u.id)
        return by_addr, TitleIndex({o.id: o.title for o in pack.obligations.values()})

    return pack.derived("inbox-indexes", build)


def units_for_address(pack: RulePack, address: str) -> list[str]:
    """Units whose contacts list this address (case-insensitive)."""
    return list(_indexes(pack)[0].get((address or "").strip().casefold(), []))


def _unit_name(pack: RulePack, uid: str) -> str:
    u = pack.units.get(uid)
    return u.name if u else uid


def _title(pack: RulePack, oid: str) -> str:
    o = pack.obligations.get(oid)
    return o.title if o else oid


def match(mail: InboundMail, pack: RulePack, context: MatchContext) -> Match:
    """The decision for one mail (see the module docstring); never touches the database."""
    texts = [(mail.subject, False)] + [(a.filename, True) for a in mail.attachments if not a.inline]
    number = so_ky_hieu(texts + [(mail.text[:2000], False)])
    mentions = [m for t, _ in texts for m in periods_in(t)]
    shown = tuple(dict.fromkeys(m.key or m.label() for m in mentions))
    what = kind(mail)
    if what != "report":
        reason = ("Thư trả lời tự động (vắng mặt, đã đọc …): không phải báo cáo" if what == "auto_reply"
                  else "Thư báo gửi không thành công (thư bị trả lại): không phải báo cáo")
        return Match("ignored", "none", (), reason, number, (), shown)
    for mid in mail.thread_ids:
        ref = _digest(context.digests, mid)
        if ref is not None and ref.items:
            return _reply(mail, pack, context, ref, mentions, number, shown)
    return _by_sender(mail, pack, context, mentions, number, shown)


def _digest(digests: Mapping[str, DigestRef], mid: str) -> DigestRef | None:
    ref = digests.get(mid)
    if ref is None:
        for k, v in digests.items():          # keys not normalised by the caller
            if normalise_id(k) == mid:
                return v
    return ref


def _fits(item: OpenItem, mentions: list[PeriodMention]) -> bool:
    return any(m.fits(item.period) for m in mentions)


def _reply(mail: InboundMail, pack: RulePack, context: MatchContext, ref: DigestRef,
           mentions: list[PeriodMention], number: str | None, shown: tuple[str, ...]) -> Match:
    name = _unit_name(pack, ref.unit)
    sent = f" ngày {fmt_date(ref.sent_on)}" if ref.sent_on else ""
    open_by_key = {i.key: i for i in context.open_items}
    items = [open_by_key[k] for k in ref.items if k in open_by_key]
    if not items:
        return Match("none", "reply", (), f"Thư trả lời thư nhắc gửi {name}{sent}, nhưng các báo cáo trong thư nhắc "
                     "đã được ghi nhận hoặc không còn phải nộp: cần xem và phân loại", number, (ref.unit,), shown)
    narrowed = [i for i in items if _fits(i, mentions)]
    note = ""
    if narrowed and len(narrowed) < len(items):
        items, note = narrowed, f" (chỉ kỳ {', '.join(dict.fromkeys(m.label() for m in mentions))} nêu trong thư)"
    if mail.from_addr and ref.unit not in units_for_address(pack, mail.from_addr):
        note += f"; người gửi {mail.from_addr} chưa có trong danh bạ của đơn vị"
    return Match("confident", "reply", tuple(Candidate(i, 1.0) for i in items),
                 f"Trả lời thư nhắc gửi {name}{sent}: {len(items)} báo cáo{note}", number, (ref.unit,), shown)


def _by_sender(mail: InboundMail, pack: RulePack, context: MatchContext, mentions: list[PeriodMention],
               number: str | None, shown: tuple[str, ...]) -> Match:
    units = units_for_address(pack, mail.from_addr)
    if not units:
        who = mail.from_addr or "không rõ"
        return Match("none", "none", (), f"Người gửi {who} không có trong danh bạ đơn vị: cần chọn đơn vị và báo cáo",
                     number, (), shown)
    names = ", ".join(_unit_name(pack, u) for u in units)
    items = [i for i in context.open_items if i.unit in units
             and (context.on is None or i.earliest is None or i.earliest <= context.on)]
    if not items:
        return Match("none", "sender", (), f"{names} không còn báo cáo nào phải nộp: cần xem và phân loại",
                     number, tuple(units), shown)
    if mentions:
        items = [i for i in items if _fits(i, mentions)]
        if not items:
            labels = ", ".join(dict.fromkeys(m.label() for m in mentions))
            return Match("none", "sender", (), f"{names} không có báo cáo nào đang chờ cho kỳ {labels}: "
                         "cần xem và phân loại", number, tuple(units), shown)
    index = _indexes(pack)[1]
    feats = features(" ".join(t for t in [mail.subject] + [a.filename for a in mail.attachments if not a.inline]))
    scored = sorted((Candidate(i, round(index.score(i.obligation, feats), 3)) for i in items),
                    key=lambda c: (-c.score, abs((c.item.due - context.on).days) if context.on else 0, c.item.due,
                                   c.item.obligation, c.item.unit))
    best = scored[0]
    reportish = best.score >= PLAUSIBLE or "bao cao" in fold(mail.subject) or bool(number)
    if len(scored) == 1 and reportish and (mentions or best.score >= CONFIDENT):
        return _confident(pack, best, units, number, shown, "kỳ và đơn vị" if mentions else "tên báo cáo")
    top = [c for c in scored if c.score >= best.score - MARGIN and c.score >= PLAUSIBLE]
    if best.score >= CONFIDENT and len(top) == 1:
        return _confident(pack, best, units, number, shown, "tên báo cáo" + (" và kỳ" if mentions else ""))
    offered = tuple((top or scored)[:MAX_CANDIDATES])
    why = ("nhiều báo cáo cùng phù hợp" if len(top) > 1 else
           "chưa rõ là báo cáo nào" if not mentions else "tiêu đề không đủ rõ")
    return Match("ambiguous", "sender", offered, f"Thư của {names}: {why} ({len(offered)} khả năng), cần chọn một",
                 number, tuple(units), shown)


def _confident(pack: RulePack, c: Candidate, units: list[str], number: str | None, shown: tuple[str, ...],
               by: str) -> Match:
    return Match("confident", "sender", (c,), f"Khớp theo người gửi, {by}: {c.text(pack)}", number, tuple(units), shown)
