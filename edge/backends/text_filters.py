"""Filters over a remote answer's text as it streams, for what a provider cannot do itself.

* `OverlapTrimmer`: a continuation asked for by instruction (the provider cannot
  continue a final assistant turn) may repeat the end of the text the client already
  has, or restart the answer from the beginning. The trimmer drops the repeated part,
  so the client never sees duplicated or restarted text.
* `StopCutter`: stop sequences the provider does not take (over its limit, or none at
  all on reasoning models) are applied here: the answer ends before the first match,
  as it would have upstream.

Both hold back only as much text as a match could still need.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["MIN_OVERLAP", "OverlapTrimmer", "StopCutter"]

# A shorter repeat ("a", "is") counts only when it is whole words on both sides: part of a
# word is as likely a real continuation as a repeat.
MIN_OVERLAP = 4


class OverlapTrimmer:
    def __init__(self, partial: str) -> None:
        self.partial = partial
        self._buf = ""
        self._deciding = bool(partial)

    def feed(self, text: str) -> str:
        if not self._deciding:
            return text
        self._buf += text
        # Still a piece of the text so far (a restart, or a repeat that may grow): wait.
        if self._buf in self.partial and len(self._buf) < len(self.partial):
            return ""
        return self._decide()

    def flush(self) -> str:
        return self._decide() if self._deciding else ""

    def _decide(self) -> str:
        self._deciding = False
        buf, partial = self._buf, self.partial
        self._buf = ""
        if buf.startswith(partial):  # the answer restarted: what the client has is dropped once
            return buf[len(partial):]
        for k in range(min(len(buf), len(partial)), 0, -1):
            if partial.endswith(buf[:k]) and (k >= MIN_OVERLAP or _whole_words(partial, buf, k)):
                return buf[k:]
        return buf


class StopCutter:
    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self._hold = max((len(s) for s in self.stops), default=1) - 1
        self._buf = ""
        self.stopped = False  # a stop sequence was found: the answer ends here

    def feed(self, text: str) -> str:
        if self.stopped:
            return ""
        self._buf += text
        hits = [i for i in (self._buf.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.stopped = True
            out, self._buf = self._buf[:min(hits)], ""
            return out
        keep = len(self._buf) - self._hold
        if keep <= 0:
            return ""
        out, self._buf = self._buf[:keep], self._buf[keep:]
        return out

    def flush(self) -> str:
        out, self._buf = ("" if self.stopped else self._buf), ""
        return out


def _whole_words(partial: str, buf: str, k: int) -> bool:
    """The k characters repeated are whole words: a word starts where they start in
    `partial`, and one ends where they end in `buf`."""
    starts = k == len(partial) or not partial[-k - 1].isalnum() or not buf[0].isalnum()
    ends = k == len(buf) or not buf[k].isalnum() or not buf[k - 1].isalnum()
    return starts and ends
