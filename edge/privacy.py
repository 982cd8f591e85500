"""Find and redact personal or secret data in chat text: e-mail addresses, phone numbers,
payment cards, IBANs, IP addresses and credentials. Pure functions over `str`, no I/O.

Precision over recall: this runs on every request, and a false positive sends a harmless
request to the slow local model. So bare digit runs (math), dates, versions and times never
match, cards and IBANs must pass their checksums, and phone numbers need a known shape. The
patterns are ASCII-only and written so that scanning stays linear on long or hostile input.

Text is normalized before it is matched, so odd spellings of a value are still that value:
NFKC (fullwidth digits and "＠"), other scripts' decimal digits as ASCII digits, format
characters (zero-width spaces and joiners, soft hyphens) removed, every space separator
(no-break, thin) a space and every dash a hyphen. Findings are reported, and redacted, at
their place in the original text. `find_pii_in` and `Redactor.redact_all` also look across
the texts of one request, so a value split between two messages is still found.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial

__all__ = ["KINDS", "Finding", "Redactor", "StreamRestorer", "describe_kinds", "find_pii", "find_pii_in", "redact"]

KINDS = ("email", "phone", "card", "iban", "ip", "secret")  # stable names: traces and config use them

_A = re.ASCII  # "٣" is a digit to Python's \d but no part of a phone number

_EMAIL = re.compile(r"(?<![\w.%+-])[\w.%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}(?![A-Za-z0-9-])", _A)
# Spelled out to slip past filters: "ada [at] example [dot] com", "ada at example dot com".
# A bracketed "at", or a spelled "dot", is required: "look at example.com" is a web site.
_AT = r"(?:\s*[\[({<]\s*at\s*[\])}>]\s*|\s+at\s+)"
_DOT = r"(?:\s*[\[({<]\s*dot\s*[\])}>]\s*|\s+dot\s+|\.)"
_EMAIL_SPELLED = re.compile(
    rf"(?<![\w.%+-])[\w.%+-]+{_AT}(?:[A-Za-z0-9-]+{_DOT})+[A-Za-z]{{2,}}(?![A-Za-z0-9-])", _A | re.IGNORECASE)

# "+" then 8-15 digits. Not after a digit or an operator ("5 +12345678" is arithmetic).
_PHONE_INTL = re.compile(
    r"(?<![\w+)\]=*/^-])(?<![0-9+)\]=*/^-] )\+[0-9](?:[ .-]?(?:[0-9]|\([0-9]{1,4}\)))++(?!\w)", _A)
# North American 3-3-4, one separator kind: (555) 123-4567, 555-123-4567, 555.123.4567.
_PHONE_US = re.compile(
    r"(?<![\w+.-])(?:1[ .-])?(?:\([0-9]{3}\) ?|[0-9]{3}([ .-]))[0-9]{3}(?(1)\1|[ .-])[0-9]{4}"
    r"(?!\w|[.-][0-9])", _A)
# A national number with a trunk "0" prefix: 030 1234567, (030) 1234567, 020 7946 0958,
# 01 23 45 67 89. Dates also start with 0 ("01-02-2024"), hence the checks in _phones.
_PHONE_TRUNK = re.compile(
    r"(?<![\w+.-])(?<![0-9][ /-])(?:\(0[0-9]{1,4}\) ?|0[0-9]{1,4}[ /-])"
    r"(?P<rest>[0-9]{2,}+(?:[ -][0-9]{2,}+)*+)(?!\w|[.-][0-9])", _A)

# A run of digit groups joined by single spaces or dashes, starting only at the run's
# true start (never after "digit + separator") and possessive, so that a long run costs
# one pass instead of one pass per group. Not after or before a "." (decimals, versions).
# Groups may be joined by spaces, dashes, dots or slashes, mixed: cards are written all ways.
_DIGIT_RUN = re.compile(r"(?<![\w./-])(?<![0-9][ ./-])[0-9]++(?:[ ./-][0-9]++)*+(?!\w)", _A)
_DIGITS = re.compile(r"[0-9]+")

_IBAN = re.compile(
    r"(?<![A-Za-z0-9])[A-Za-z]{2}[0-9]{2}"
    r"(?:[A-Za-z0-9]{11,30}|(?:[ .-][A-Za-z0-9]{4}){2,7}(?:[ .-][A-Za-z0-9]{1,4})?)(?![A-Za-z0-9])", _A)

# Fewer than 4 parts is a version or a date, not an address; 5+ parts is a version too.
_IPV4 = re.compile(r"(?<![\w.])[0-9]{1,3}(?:\.[0-9]{1,3}){3}(?!\w|\.[0-9])", _A)
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9A-Fa-f]{1,4})?(?!\w)",
    _A)

# Only well-known key shapes. Entropy heuristics ("a long random-looking word") would
# flag git commit ids, UUIDs and content hashes, which users paste all the time.
_SECRETS = tuple(re.compile(p, _A) for p in (
    r"(?<![\w-])sk-[\w-]{20,}",                                # OpenAI sk-/sk-proj-, Anthropic sk-ant-
    r"(?<![A-Za-z0-9])AKIA[0-9A-Z]{16}(?![A-Za-z0-9])",        # AWS access key id
    r"(?<![A-Za-z0-9])gh[pousr]_[A-Za-z0-9]{36,}",             # GitHub token
    r"(?<![A-Za-z0-9])xox[abpsr]-[A-Za-z0-9-]{10,}",           # Slack token
    r"(?<![A-Za-z0-9])AIza[\w-]{35}(?![\w-])",                 # Google API key
    r"(?<![\w-])eyJ[\w-]{5,}\.[\w-]{5,}\.[\w-]*",              # JWT: base64url '{"...' header
    # PEM private key; one pasted without its END line is still a key: take its base64 lines.
    r"-----BEGIN ([A-Z0-9 ]*PRIVATE KEY)-----(?:(?s:.*?)-----END \1-----|(?:\s*+[A-Za-z0-9+/=]{16,}+)*+)",
    (r"(?i)(?<![\w-])(?:[a-z0-9]+[_-])*(?P<key>passw(?:or)?d|passphrase|api[_-]?key|secret[_-]?key"
     r"|(?:client|api|app)[_-]?secret|(?:access|auth|refresh|api)[_-]?token|token)"
     r"[\"']?\s*[:=]\s*[\"']?(?P<v>[^\s\"'`]{6,})"),
    r"(?<![\w-])[Bb]earer\s+(?P<v>[\w.~+/-]{20,}=*)",
))
# Values that name a type or refer to a secret instead of being one: "password: string",
# "<your key>", "${API_KEY}", "YOUR_API_KEY", "os.getenv(...)", "self.token", "********".
_NOT_VALUES = frozenset({"string", "number", "boolean", "required", "optional", "undefined", "password"})
_REFERENCE = re.compile(r"[<${%]|(?i:your)|.*[(\[]|(?:[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+"
                        r"|[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+|[*xX.]+)$", _A)


@dataclass(frozen=True)
class Finding:
    """One sensitive value: text[start:end] of the scanned text, of kind `kind`."""

    kind: str   # one of KINDS
    start: int  # text[start:end] is the sensitive value
    end: int


def _ndigits(s: str) -> int:
    return sum(c in "0123456789" for c in s)


def _trim(text: str, start: int, end: int, seps: str, ok: Callable[[str], bool]) -> int | None:
    """End of the longest text[start:e] (e <= end, cut only at a separator, at most 64
    characters: no value trimmed here is longer, and the bound keeps long runs linear)
    that passes `ok`, or None. So a number followed by unrelated groups is still found."""
    for e in (end, *(k for k in range(min(end, start + 64) - 1, start, -1) if text[k] in seps)):
        if e - start <= 64 and ok(text[start:e]):
            return e
    return None


def _trunk_ok(head: int, rest: str) -> bool:
    # One separator kind after the prefix and 9-12 digits: "01-02-2024" (8) and
    # "01-02-2024 12" (mixed) are dates; 12 keeps clear of 13+ digit card numbers.
    return len(set(rest) - set("0123456789")) <= 1 and 9 <= head + _ndigits(rest) <= 12


def _phones(text: str) -> Iterator[tuple[int, int]]:
    for m in _PHONE_INTL.finditer(text):
        if (e := _trim(text, m.start(), m.end(), " .-", lambda s: 8 <= _ndigits(s) <= 15)) is not None:
            yield m.start(), e
    for m in _PHONE_US.finditer(text):
        yield m.span()
    for m in _PHONE_TRUNK.finditer(text):
        ok = partial(_trunk_ok, _ndigits(m.group()) - _ndigits(m.group("rest")))
        if (e := _trim(text, m.start("rest"), m.end(), " -", ok)) is not None:
            yield m.start(), e


def _luhn(digits: str) -> bool:
    doubled = (int(c) * (1 + i % 2) for i, c in enumerate(reversed(digits)))
    return sum(n - 9 if n > 9 else n for n in doubled) % 10 == 0


def _card_shape(sizes: list[int]) -> bool:
    # Printed groupings only (4-4-4-4[-1..4], Amex 4-6-5, Diners 4-6-4): a list of
    # numbers ("12 45 78 91 23 56 89 14") passes Luhn one time in ten.
    return (len(sizes) == 1 or sizes in ([4, 6, 5], [4, 6, 4], [8, 8])
            or (all(n == 4 for n in sizes[:-1]) and 1 <= sizes[-1] <= 4))


def _cards(text: str) -> Iterator[tuple[int, int]]:
    for m in _DIGIT_RUN.finditer(text):
        groups = [g.span() for g in _DIGITS.finditer(text, m.start(), m.end())]
        i = 0
        while i < len(groups):  # the leftmost, then longest, span of whole groups that is a card
            for j in range(min(len(groups), i + 5) - 1, i - 1, -1):  # 4-4-4-4-3 has the most groups
                part = groups[i:j + 1]
                digits = "".join(text[a:b] for a, b in part)
                # No card starts with 0, and few (airline UATP) with 1, which is how epoch
                # timestamps in ms, us and ns (13, 16, 19 digits) and snowflake ids start.
                if (13 <= len(digits) <= 19 and digits[0] not in "01"
                        and _card_shape([b - a for a, b in part]) and _luhn(digits)):
                    yield part[0][0], part[-1][1]
                    i = j
                    break
            i += 1


def _iban_ok(s: str) -> bool:
    iban = "".join(c for c in s if c.isalnum()).upper()
    # Real BBANs hold account numbers; requiring digits keeps word runs like
    # "at12 this that ..." from passing mod-97 by chance (1 in 97).
    if not 15 <= len(iban) <= 34 or _ndigits(iban[4:]) < 6:
        return False
    return int("".join(str(int(c, 36)) for c in iban[4:] + iban[:4])) % 97 == 1


def _ibans(text: str) -> Iterator[tuple[int, int]]:
    for m in _IBAN.finditer(text):
        if (e := _trim(text, m.start(), m.end(), " .-", _iban_ok)) is not None:
            yield m.start(), e


def _ips(text: str) -> Iterator[tuple[int, int]]:
    for m in _IPV4.finditer(text):
        try:
            ipaddress.IPv4Address(m.group())  # rejects 999.1.1.1 and leading zeros
        except ValueError:
            continue
        yield m.span()
    for m in _IPV6.finditer(text):
        s, e = m.span()
        if text[e - 1] == ":" and text[e - 2] != ":":  # "fe80::1: done"
            e -= 1
        try:
            ipaddress.IPv6Address(text[s:e])
        except ValueError:
            continue
        groups = [g for g in text[s:e].split(":") if g]
        # Slices and C++ scopes ("x[1::2]", "a::b") are valid addresses too: demand 3+
        # groups, or one of 3+ characters that is not all decimal. Skips "::1", "a::b".
        if len(groups) >= 3 or any(len(g) >= 3 and not g.isdigit() for g in groups):
            yield s, e


def _secrets(text: str) -> Iterator[tuple[int, int]]:
    for rx in _SECRETS:
        for m in rx.finditer(text):
            if "v" not in rx.groupindex:
                yield m.span()
                continue
            s, e = m.span("v")
            value = text[s:e].rstrip(".,;")  # keep "!" and ")": better to hide too much
            e = s + len(value)
            key = m.groupdict().get("key") or ""
            if (len(value) >= 6 and value.lower() not in _NOT_VALUES and not _REFERENCE.match(value)
                    and not (key.lower().endswith("token") and value.isdigit())):  # max_token=4096
                yield s, e


# Spelled addresses end in a common top-level domain: "meet at noon dot the usual place" is not one.
_SPELLED_TLDS = frozenset(
    "com org net edu gov mil int io co info biz me app dev ai us uk de fr es it nl be ch at se no dk fi pl ru cn "
    "jp in br au ca eu".split())
_BRACKETED_AT = re.compile(r"[\[({<]\s*at\s*[\])}>]", _A | re.IGNORECASE)
_SPELLED_DOT = re.compile(r"(?:[\[({<]\s*|\s)dot(?:\s*[\])}>]|\s)", _A | re.IGNORECASE)


def _emails(text: str) -> Iterator[tuple[int, int]]:
    yield from (m.span() for m in _EMAIL.finditer(text))
    for m in _EMAIL_SPELLED.finditer(text):
        value = m.group()
        tld = re.split(r"[\s.\])}>]", value)[-1].lower()
        if (tld in _SPELLED_TLDS and (_BRACKETED_AT.search(value) or _SPELLED_DOT.search(value))):
            yield m.span()


_DETECTORS: dict[str, Callable[[str], Iterator[tuple[int, int]]]] = {
    "email": _emails,
    "phone": _phones, "card": _cards, "iban": _ibans, "ip": _ips, "secret": _secrets,
}


def _check(kinds: Iterable[str]) -> frozenset[str]:
    chosen = tuple(kinds)
    unknown = [k for k in chosen if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown PII kind(s) {', '.join(map(repr, unknown))}; "
                         f"valid kinds: {', '.join(KINDS)}")
    return frozenset(chosen)


def _normalized(text: str) -> tuple[str, list[int] | None]:
    """(the text as matched, and for each of its characters the index of the original
    character it came from; None when nothing changed, as for all-ASCII text)."""
    if text.isascii():
        return text, None
    out: list[str] = []
    origin: list[int] = []
    for i, c in enumerate(text):
        if c.isascii():
            out.append(c)
            origin.append(i)
            continue
        category = unicodedata.category(c)
        if category == "Cf":           # zero-width spaces and joiners, soft hyphens, bidi marks
            continue
        if category == "Zs":           # no-break, thin, figure spaces
            n = " "
        elif category == "Pd" or c == "\u2212":  # dashes, the minus sign
            n = "-"
        elif (digit := unicodedata.decimal(c, None)) is not None:  # Arabic-Indic, Devanagari, fullwidth...
            n = str(digit)
        else:
            n = unicodedata.normalize("NFKC", c)
        out.append(n)
        origin.extend([i] * len(n))
    return "".join(out), origin


def find_pii(text: str, kinds: Iterable[str] = KINDS) -> list[Finding]:
    """All findings of the given kinds in `text`, sorted by start and non-overlapping:
    where two overlap, the longer wins, then the kind listed earlier in KINDS. Spans are
    in `text` as given, though matching sees it normalized (see the module docstring).
    Raises ValueError for a kind not in KINDS."""
    wanted = _check(kinds)
    norm, origin = _normalized(text)
    found = [(s, e, kind) for kind in KINDS if kind in wanted for s, e in _DETECTORS[kind](norm)]
    found.sort(key=lambda f: (f[0] - f[1], KINDS.index(f[2]), f[0]))
    starts: list[int] = []
    kept: list[Finding] = []  # disjoint and sorted, so their ends are sorted too
    for s, e, kind in found:
        i = bisect_left(starts, s)
        if (i < len(kept) and kept[i].start < e) or (i and kept[i - 1].end > s):
            continue
        starts.insert(i, s)
        kept.insert(i, Finding(kind, s, e))
    if origin is None:
        return kept
    return [Finding(f.kind, origin[f.start], origin[f.end - 1] + 1) for f in kept]


# Texts of one request are also scanned joined by this, so a value split between two
# messages ("my card is 4111 1111" + "1111 1111") is found whole.
_JOIN = " "


def find_pii_in(texts: Sequence[str], kinds: Iterable[str] = KINDS) -> list[str]:
    """Sorted distinct kinds found in any of `texts` or across their boundaries."""
    kinds = tuple(kinds)
    found = {f.kind for t in texts for f in find_pii(t, kinds)}
    if len(texts) > 1:
        found |= {f.kind for f in find_pii(_JOIN.join(texts), kinds)}
    return sorted(found)


def _normal(kind: str, value: str) -> str:
    """One spelling per value, so "4111 1111 1111 1111" and "4111111111111111" share a
    placeholder."""
    value = _normalized(value)[0]
    if kind == "ip":
        return str(ipaddress.ip_address(value))
    if kind in ("phone", "card", "iban"):
        return "".join(c for c in value.upper() if c.isalnum())
    return value.lower() if kind == "email" else value


class Redactor:
    """Redacts several texts (the messages of one request) with one numbering: the same
    value gets the same placeholder ("[EMAIL_1]") in every text, a new value of a kind
    the next number ("[EMAIL_2]")."""

    def __init__(self, kinds: Iterable[str] = KINDS) -> None:
        self._kinds = _check(kinds)
        self._labels: dict[tuple[str, str], str] = {}
        self._counts: dict[str, int] = {}
        self._originals: dict[str, str] = {}  # placeholder -> the value as first written

    def redact(self, text: str) -> str:
        """`text` with each finding replaced by its placeholder."""
        out: list[str] = []
        pos = 0
        for f in find_pii(text, self._kinds):
            out += (text[pos:f.start], self._label(f.kind, text[f.start:f.end]))
            pos = f.end
        out.append(text[pos:])
        return "".join(out)

    def redact_all(self, texts: Sequence[str]) -> list[str]:
        """`texts` (every field of one request that leaves the device) redacted together:
        a value split across two of them is replaced in each part by one placeholder."""
        joined = _JOIN.join(texts)
        bounds, pos = [], 0
        for t in texts:
            bounds.append((pos, pos + len(t)))
            pos += len(t) + len(_JOIN)
        cuts: list[list[tuple[int, int, str]]] = [[] for _ in texts]
        for f in find_pii(joined, self._kinds):
            label = self._label(f.kind, joined[f.start:f.end])
            for n, (a, b) in enumerate(bounds):
                if f.start < b and f.end > a:
                    cuts[n].append((max(f.start, a) - a, min(f.end, b) - a, label))
        out = []
        for t, spans in zip(texts, cuts):
            parts, at = [], 0
            for s, e, label in spans:
                parts += (t[at:s], label)
                at = e
            out.append("".join(parts) + t[at:])
        return out

    def _label(self, kind: str, value: str) -> str:
        key = (kind, _normal(kind, value))
        label = self._labels.get(key)
        if label is None:
            n = self._counts[kind] = self._counts.get(kind, 0) + 1
            label = self._labels[key] = f"[{kind.upper()}_{n}]"
            self._originals[label] = value
        return label

    @property
    def kinds_found(self) -> list[str]:
        """Sorted distinct kinds replaced so far."""
        return sorted(self._counts)

    def restore(self, text: str) -> str:
        """`text` (a remote answer) with this request's placeholders put back to the values."""
        if not self._originals or "[" not in text:
            return text
        return _PLACEHOLDER.sub(lambda m: self._originals.get(m.group(0), m.group(0)), text)


_PLACEHOLDER = re.compile(r"\[(?:EMAIL|PHONE|CARD|IBAN|IP|SECRET)_\d+\]")
_LONGEST_PLACEHOLDER = len("[SECRET_9999]")


class StreamRestorer:
    """`Redactor.restore` for an answer that arrives in pieces: a placeholder split across
    two pieces ("[EMA" + "IL_1]") is held back until it is whole (or cannot be one)."""

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._held = ""

    def feed(self, piece: str) -> str:
        """The text that can go to the client now."""
        text = self._held + piece
        cut = text.rfind("[")
        if cut != -1 and "]" not in text[cut:] and len(text) - cut < _LONGEST_PLACEHOLDER:
            self._held, text = text[cut:], text[:cut]  # maybe the start of a placeholder
        else:
            self._held = ""
        return self._redactor.restore(text)

    def flush(self) -> str:
        """What is still held back, at the end of the answer."""
        text, self._held = self._held, ""
        return self._redactor.restore(text)


def redact(text: str, kinds: Iterable[str] = KINDS) -> tuple[str, list[str]]:
    """(`text` with each finding replaced by a placeholder such as "[EMAIL_1]", numbered
    per kind, the same value sharing one; the sorted distinct kinds replaced)."""
    r = Redactor(kinds)
    return r.redact(text), r.kinds_found


_DESCRIPTIONS = {"email": "an e-mail address", "phone": "a phone number", "card": "a payment card number",
                 "iban": "an IBAN", "ip": "an IP address", "secret": "a secret key or password"}


def describe_kinds(kinds: Iterable[str]) -> str:
    """['card', 'email'] -> 'a payment card number and an e-mail address' (for traces and errors)."""
    words = [_DESCRIPTIONS.get(k, k) for k in kinds]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
