"""Building the landing-page URL a click is redirected to.

An offer's destination URL either holds a `{refid}` macro or gets the RefID added as a
query parameter (named by the offer, `refid` by default) before any fragment; a
parameter of that name already in the URL (a placeholder) takes the RefID instead. Macros
`{sub1}`…`{sub5}`, `{offer_id}` and `{affiliate_id}` are filled too, URL-encoded. The
URL is compiled once per link into literal pieces and slots, so a click only joins
strings.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

_MACRO = re.compile(r"\{(refid|sub[1-5]|offer_id|affiliate_id)\}")
# slot numbers: 0 = refid, 1..5 = sub1..sub5
_PLAIN = re.compile(r"[A-Za-z0-9_.~-]*\Z").match  # needs no percent-encoding
_SLOTS = {"refid": 0, "sub1": 1, "sub2": 2, "sub3": 3, "sub4": 4, "sub5": 5}


class RedirectTemplate:
    __slots__ = ("_pieces", "_slots")

    def __init__(self, destination_url: str, refid_param: str, offer_id: int, affiliate_id: int):
        url = destination_url
        if "{refid}" not in url:
            name = quote(refid_param, safe="")
            base, hash_, fragment = url.partition("#")
            path, question, query = base.partition("?")
            # a parameter of the RefID's name already there (a placeholder the advertiser's
            # page was built with) is the RefID's place: a second one would be ignored
            # by readers that take the first value (the kit's `refid.js` does)
            fields = query.split("&") if query else []
            taken = [i for i, f in enumerate(fields) if unquote(f.partition("=")[0]) == refid_param]
            if taken:
                fields[taken[0]] = f"{name}={{refid}}"
                fields = [f for i, f in enumerate(fields) if i not in taken[1:]]
                url = f"{path}?{'&'.join(fields)}{hash_}{fragment}"
            else:
                sep = "?" if not question else "" if base.endswith(("?", "&")) else "&"
                url = f"{base}{sep}{name}={{refid}}{hash_}{fragment}"
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
