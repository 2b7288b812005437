"""Building the landing-page URL a click is redirected to.

An offer's destination URL either holds a `{refid}` macro or gets the RefID added as a
query parameter (named by the offer, `refid` by default) before any fragment. Macros
`{sub1}`…`{sub5}`, `{offer_id}` and `{affiliate_id}` are filled too, URL-encoded. The
URL is compiled once per link into literal pieces and slots, so a click only joins
strings.
"""

from __future__ import annotations

import re
from urllib.parse import quote

_MACRO = re.compile(r"\{(refid|sub[1-5]|offer_id|affiliate_id)\}")
# slot numbers: 0 = refid, 1..5 = sub1..sub5
_PLAIN = re.compile(r"[A-Za-z0-9_.~-]*\Z").match  # needs no percent-encoding
_SLOTS = {"refid": 0, "sub1": 1, "sub2": 2, "sub3": 3, "sub4": 4, "sub5": 5}


class RedirectTemplate:
    __slots__ = ("_pieces", "_slots")

    def __init__(self, destination_url: str, refid_param: str, offer_id: int, affiliate_id: int):
        url = destination_url
        if "{refid}" not in url:
            base, hash_, fragment = url.partition("#")
            if "?" not in base:
                sep = "?"
            elif base.endswith(("?", "&")):
                sep = ""
            else:
                sep = "&"
            url = f"{base}{sep}{quote(refid_param, safe='')}={{refid}}{hash_}{fragment}"
        # invariant: len(pieces) == len(slots) + 1; literals merge into pieces[-1]
        pieces: list[str] = [""]
        slots: list[int] = []
        pos = 0
        for m in _MACRO.finditer(url):
            name = m.group(1)
            pieces[-1] += url[pos : m.start()]
            pos = m.end()
            if name == "offer_id":
                pieces[-1] += str(offer_id)
            elif name == "affiliate_id":
                pieces[-1] += str(affiliate_id)
            else:
                slots.append(_SLOTS[name])
                pieces.append("")
        pieces[-1] += url[pos:]
        self._pieces = pieces
        self._slots = slots

    def build(self, refid: str, subs: tuple[str, str, str, str, str]) -> str:
        pieces = self._pieces
        if len(pieces) == 2 and self._slots[0] == 0:  # the common case: only the RefID
            return pieces[0] + refid + pieces[1]
        values = (refid, *subs)
        out = [pieces[0]]
        for i, slot in enumerate(self._slots):
            v = values[slot]
            out.append(v if slot == 0 or _PLAIN(v) else quote(v, safe=""))
            out.append(pieces[i + 1])
        return "".join(out)
