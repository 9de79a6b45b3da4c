"""What a subject or a file name says: periods, số ký hiệu, and the words compared with titles.

Why separate: these are the Vietnamese writing habits of report mail ("Báo cáo tháng 11/2026",
"BC quý IV/2026", "123/BC-STC", "KHHĐ 57"), tested on their own; ``match`` only combines them.
Period fragments are turned into the project's period keys by ``engine.periods.normalise_period_text``
(the same parser as ``--period`` and spreadsheet cells), so a key found here is a key instances have.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from engine.limits import year_ok
from engine.periods import fold, label_for_key, normalise_period_text

_ROMAN = {"i": 1, "ii": 2, "iii": 3, "iv": 4}


@dataclass(frozen=True)
class PeriodMention:
    """A period named in the text: ``freq`` monthly/quarterly/half_yearly/yearly, ``n`` the month,
    quarter or half (None for a year), ``year`` None when the text left it out ("tháng 11")."""
    freq: str
    n: int | None
    year: int | None
    text: str

    @property
    def key(self) -> str | None:
        if self.year is None:
            return None
        frag = {"monthly": f"tháng {self.n}/{self.year}", "quarterly": f"quý {self.n}/{self.year}",
                "half_yearly": f"{self.year}-H{self.n}", "yearly": f"năm {self.year}"}[self.freq]
        return normalise_period_text(frag)

    def fits(self, period_key: str) -> bool:
        """True when an instance's period key is this period (any year when the text gave none)."""
        m = _KEY.fullmatch(period_key or "")
        if not m:
            return False
        year, q, h, month = int(m["y"]), m["q"], m["h"], m["m"]
        freq, n = (("quarterly", int(q)) if q else ("half_yearly", int(h)) if h else
                   ("monthly", int(month)) if month else ("yearly", None))
        return freq == self.freq and n == self.n and (self.year is None or self.year == year)

    def label(self) -> str:
        if self.key:
            return label_for_key(self.key)
        return {"monthly": f"tháng {self.n}", "quarterly": f"quý {self.n}",
                "half_yearly": "6 tháng đầu năm" if self.n == 1 else "6 tháng cuối năm", "yearly": "năm"}[self.freq]


_KEY = re.compile(r"(?P<y>\d{4})(?:-Q(?P<q>[1-4])|-H(?P<h>[12])|-(?P<m>\d{2}))?")
_YEAR = r"(?:(?:\s*(?:[-/.]|nam)\s*|\s+)(?P<y>\d{4}))"
# Over the folded text, longest forms first; a match's span is consumed so "năm 2026" inside
# "6 tháng đầu năm 2026" or "tháng 11 năm 2026" is not read again as the year report.
_FORMS: list[tuple[str, re.Pattern[str]]] = [
    ("half_yearly", re.compile(r"\b(?:6|sau) thang (?P<n>dau|cuoi)(?: nam)?(?:\s*(?P<y>\d{4}))?")),
    ("half_yearly", re.compile(r"\b(?:6|sau) thang" + _YEAR)),                       # "6 tháng năm 2026" = H1
    ("half_yearly", re.compile(r"\bh(?P<n>[12])\s*[-/.]\s*(?P<y>\d{4})\b")),
    ("quarterly", re.compile(r"\bquy\s*(?P<n>iv|iii|ii|i|[1-4])\b" + _YEAR + "?")),
    ("quarterly", re.compile(r"\bq(?P<n>[1-4])\s*[-/.]\s*(?P<y>\d{4})\b")),
    ("monthly", re.compile(r"\b(?:thang|t)\s*(?P<n>\d{1,2})\b" + _YEAR + "?")),
    ("monthly", re.compile(r"(?<![\d/.-])(?P<n>\d{1,2})\s*/\s*(?P<y>\d{4})\b")),    # 11/2026, not 30/11/2026
    ("yearly", re.compile(r"\bnam\s*(?P<y>\d{4})\b")),
]


_DATE_BEFORE = re.compile(r"\bngay\s*\d{1,2}\s*$")


def periods_in(text: str) -> list[PeriodMention]:
    """Every period the text names, in order of appearance, each once."""
    folded = " ".join(fold(unicodedata.normalize("NFC", text or "")).replace("_", " ").split())
    taken: list[tuple[int, int]] = []
    found: list[tuple[int, PeriodMention]] = []
    for freq, pattern in _FORMS:
        for m in pattern.finditer(folded):
            if any(a < m.end() and m.start() < b for a, b in taken):
                continue
            mention = _mention(freq, m)
            if mention is None:
                continue
            taken.append((m.start(), m.end()))
            if freq == "monthly" and _DATE_BEFORE.search(folded, 0, m.start()):
                continue                                  # "ngày 30 tháng 11 năm 2026" is a date
            found.append((m.start(), mention))
    out: dict[tuple[str, int | None, int | None], PeriodMention] = {}
    for _, mention in sorted(found, key=lambda x: x[0]):
        out.setdefault((mention.freq, mention.n, mention.year), mention)
    return list(out.values())


def _mention(freq: str, m: re.Match[str]) -> PeriodMention | None:
    groups = m.groupdict()
    year = int(groups["y"]) if groups.get("y") else None
    if year is not None and not year_ok(year):
        return None
    raw_n = groups.get("n")
    if freq == "half_yearly":
        n = 2 if raw_n in ("cuoi", "2") else 1
    elif freq == "quarterly":
        n = _ROMAN.get(raw_n or "") or int(raw_n or 0)
    elif freq == "monthly":
        n = int(raw_n or 0)
        if not 1 <= n <= 12:
            return None
    else:
        n = None
    return PeriodMention(freq, n, year, m.group(0))


# Số ký hiệu: "123/BC-STC", "45/BC-UBND", "12/KH-SKHCN", "05/2026/BC-UBND"; the Party's form "45-BC/ĐU"
# for reports (only report-like types, so the "57-NQ/TW" a report is about is not taken); in a file
# name, where "/" cannot appear, "123-BC-STC" or "123_BC_STC".
_UP = "A-ZĐƯƠÂÊÔĂ"
_ADMIN = re.compile(rf"(?<![\w/])(\d{{1,5}})\s*/\s*(?:(\d{{4}})\s*/\s*)?([{_UP}]{{1,6}}(?:-[{_UP}0-9&]{{1,12}}){{1,3}})(?![\w])")
_PARTY = re.compile(rf"(?<![\w/-])(\d{{1,5}})-(BC|TTR|CV|KH|TB)/([{_UP}]{{1,12}}(?:-[{_UP}0-9]{{1,10}})?)(?![\w])")
_FILE = re.compile(rf"(?<![\w])(\d{{1,5}})[\s_-]+(BC|KH|CV|TTR|TB)[\s_-]+([{_UP}]{{2,12}})(?![\w])")


def so_ky_hieu(texts: Iterable[tuple[str, bool]]) -> str | None:
    """The first document number in ``texts`` ((text, is_file_name) in order of trust), upper case."""
    for text, is_file in texts:
        t = unicodedata.normalize("NFC", text or "").upper()
        m = _ADMIN.search(t)
        if m:
            return f"{m[1]}/{m[2] + '/' if m[2] else ''}{m[3]}"
        m = _PARTY.search(t)
        if m:
            return f"{m[1]}-{m[2]}/{m[3]}"
        if is_file:
            m = _FILE.search(t)
            if m:
                return f"{m[1]}/{m[2]}-{m[3]}"
    return None


# ── words, for comparing a subject with obligation titles ──────────────────────────────────────
_ABBR = {"khhd": "ke hoach hanh dong", "khcn": "khoa hoc cong nghe", "skhcn": "so khoa hoc cong nghe",
         "nq": "nghi quyet", "ctr": "chuong trinh", "ctrhd": "chuong trinh hanh dong", "ubnd": "uy ban nhan dan",
         "bcd": "ban chi dao", "dmst": "doi moi sang tao", "cds": "chuyen doi so", "tw": "trung uong",
         "tu": "tinh uy", "bc": "bao cao", "kh": "ke hoach", "vptu": "van phong tinh uy", "btg": "ban tuyen giao",
         "hang": ""}


def words(text: str) -> list[str]:
    """Folded syllables with the usual abbreviations spelt out ("KHHĐ" → ke hoach hanh dong)."""
    folded = fold(unicodedata.normalize("NFC", text or "")).replace("kh&cn", "khcn").replace("kh & cn", "khcn")
    out: list[str] = []
    for w in re.findall(r"[a-z0-9]+", folded):
        out.extend(_ABBR.get(w, w).split())
    return out


def features(text: str) -> set[str]:
    """Syllables and pairs of syllables (Vietnamese words are mostly two syllables)."""
    ws = words(text)
    return set(ws) | {f"{a} {b}" for a, b in zip(ws, ws[1:])}


class TitleIndex:
    """Obligation titles as weighted features: a feature shared by many titles (“báo cáo”, “kết quả”)
    weighs little, one that tells them apart (“6 tháng”, “tuyên truyền”, “sở khoa học”) much."""

    def __init__(self, titles: dict[str, str]) -> None:
        self.feats = {oid: features(t) for oid, t in titles.items()}
        df = Counter(f for fs in self.feats.values() for f in fs)
        n = max(1, len(titles))
        self.weight = {f: math.log((n + 1) / (c + 0.5)) for f, c in df.items()}

    def score(self, obligation: str, text_features: set[str]) -> float:
        """Weighted share of the title's features found in the text, 0..1."""
        fs = self.feats.get(obligation)
        if not fs:
            return 0.0
        total = sum(self.weight[f] for f in fs)
        return sum(self.weight[f] for f in fs if f in text_features) / total if total else 0.0
