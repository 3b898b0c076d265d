"""Answer extraction and word matching shared by the scorers. Pure functions, no models.

The 135M model rarely follows a format exactly ("**Yes.**", "The answer is -1,234.", a label on
its own line), so extraction looks for an explicit ``Answer:`` first and falls back to the first
(yes/no) or last (numbers) plausible token in the text.
"""

from __future__ import annotations

import re
import unicodedata

_MINUS = str.maketrans({"\u2212": "-", "\u2013": "-", "\u2014": "-", "\ufe63": "-", "\uff0d": "-"})
_WORD = re.compile(r"[^\W_]+", re.UNICODE)  # letters/digits; apostrophes and hyphens split words


def normalize(text: str) -> str:
    """NFKC (full-width letters become ASCII), unicode dashes become '-', case folded."""
    return unicodedata.normalize("NFKC", text or "").translate(_MINUS).casefold()


def words(text: str) -> list[str]:
    """Whole words, normalised: 'No-one said YES!' -> ['no', 'one', 'said', 'yes']."""
    return _WORD.findall(normalize(text))


# -- yes / no -------------------------------------------------------------------------------------
_MARKER = r"(?:final\s+)?answer\s*(?:is|was|would\s+be)?\s*[:=]?\s*[\"'*_(\[]*\s*"
_EXPLICIT_YN = re.compile(_MARKER + r"(yes|no)\b")
_ANY_YN = re.compile(r"\b(yes|no)\b")


def extract_yes_no(text: str) -> str | None:
    """'yes', 'no' or None. An explicit 'Answer: X' wins; otherwise the first whole-word yes/no."""
    t = normalize(text)
    m = _EXPLICIT_YN.search(t) or _ANY_YN.search(t)
    return m.group(1) if m else None


# -- numbers --------------------------------------------------------------------------------------
# A minus sign counts only when it is not a binary minus ("10-5" is 10 and 5, "= -5" is -5).
_NUM = r"(?:(?<![\w)\].])-)?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\d,]*\d)"
_NUM_RE = re.compile(_NUM)
_EXPLICIT_NUM = re.compile(_MARKER + r"\$?\\?(?:boxed\{)?\s*(" + _NUM + ")")


def _to_float(token: str) -> float:
    return float(token.replace(",", "").replace(" ", ""))


def extract_number(text: str) -> float | None:
    """The final numeric answer: the number after an explicit 'Answer:', else the last number."""
    t = normalize(text)
    explicit = _EXPLICIT_NUM.findall(t)
    if explicit:
        return _to_float(explicit[-1])
    found = _NUM_RE.findall(t)
    return _to_float(found[-1]) if found else None


def number_score(text: str, answer: float) -> float:
    """1.0 when the extracted number equals ``answer`` (exact up to float noise), else 0.0."""
    value = extract_number(text)
    return 1.0 if value is not None and abs(value - answer) < 1e-9 else 0.0


# -- labels and lines ------------------------------------------------------------------------------
def strip_label(text: str, labels: tuple[str, ...]) -> str:
    """The answer text after an optional leading label ('Clue:', '(Pig Latin)'), markdown and quotes removed.

    When the first non-empty line is only a lead-in ending in ':' ("Here is the translation:"), the
    next non-empty line is the answer.
    """
    lines = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip()]
    if not lines:
        return ""
    label_re = re.compile(
        r"^[\s*_#>\"'(]*(?:" + "|".join(re.escape(lb) for lb in labels) + r")[\s*_)]*[:\-]?[\s*_]*", re.IGNORECASE
    )
    for i, line in enumerate(lines):
        stripped = label_re.sub("", line, count=1).strip()
        if stripped:
            if stripped.endswith(":") and i + 1 < len(lines) and stripped == line:
                continue  # a lead-in sentence, the answer follows
            return stripped.strip("*_\"'`“”‘’ ").strip()
    return ""
