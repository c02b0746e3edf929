"""Find items by id or title (for the page's search box and GET /items/search). No HTTP here.

`find_items(version, q, limit)` returns item rows, best first. Matching is case-insensitive; a row
matches when q occurs in its id or its title. Rank classes, best first:
    0 the id or the title equals q;  1 the title starts with q followed by a non-alphanumeric character;
    2 the title starts with q;  3 the id starts with q;  4 a word of the title starts with q;  5 anywhere;
ties by popularity (users per item, descending), then row. The text of a version is prepared once
(one lower-cased blob "id<TAB>title<NEWLINE>..." and its line offsets), so a query costs one C-level scan
of the blob plus Python work on the matching rows only.
"""

from __future__ import annotations

import re
import threading
import weakref
from dataclasses import dataclass

import numpy as np

from app.serving.version import Version


@dataclass(frozen=True)
class _Text:
    blob: str  # "id\ttitle\n" per row, lower case; ids and titles never contain \t or \n here (replaced)
    starts: np.ndarray  # (n_items,) int64 offset of each row's line in blob
    ids: tuple[str, ...]  # lower case
    titles: tuple[str, ...]  # lower case, "" when none


_texts: weakref.WeakKeyDictionary[Version, _Text] = weakref.WeakKeyDictionary()
_lock = threading.Lock()
_CLEAN = str.maketrans({"\t": " ", "\n": " ", "\r": " "})


def _text(version: Version) -> _Text:
    cached = _texts.get(version)
    if cached is None:
        with _lock:
            cached = _texts.get(version)
            if cached is None:
                ids = tuple(i.lower().translate(_CLEAN) for i in version.item_ids)
                titles = tuple((m.get("title") or "").lower().translate(_CLEAN) for m in version.item_meta)
                lines = [f"{i}\t{t}\n" for i, t in zip(ids, titles, strict=True)]
                starts = np.zeros(len(lines), dtype=np.int64)
                if lines:
                    starts[1:] = np.cumsum([len(x) for x in lines[:-1]])
                cached = _Text("".join(lines), starts, ids, titles)
                _texts[version] = cached
    return cached


def popular_items(version: Version, limit: int) -> list[int]:
    """Rows (<= limit) of the most popular items (users per item, descending), ties by lower row."""
    pop = version.item_popularity
    n = min(limit, pop.size)
    if n == 0:
        return []
    part = np.argpartition(-pop, n - 1)[:n] if n < pop.size else np.arange(pop.size)
    # every row tied with the n-th popularity is a candidate, so the lower rows win the ties
    cand = np.flatnonzero(pop >= pop[part].min())
    return cand[np.lexsort((cand, -pop[cand]))][:n].tolist()


def find_items(version: Version, q: str, limit: int) -> list[int]:
    """Rows (<= limit) of the items matching q, best first (see the module docstring)."""
    needle = q.strip().lower().translate(_CLEAN)
    if not needle:
        return []
    text = _text(version)
    offsets = [m.start() for m in re.finditer(re.escape(needle), text.blob)]
    if not offsets:
        return []
    rows = np.unique(np.searchsorted(text.starts, np.asarray(offsets, dtype=np.int64), side="right") - 1)
    word = re.compile(r"(?:^|\W)" + re.escape(needle))
    pop = version.item_popularity
    keyed = []
    for r in rows.tolist():
        item_id, title = text.ids[r], text.titles[r]
        if needle not in item_id and needle not in title:  # the match spanned the tab between id and title
            continue
        if item_id == needle or title == needle:
            cls = 0
        elif title.startswith(needle):
            cls = 1 if not title[len(needle)].isalnum() else 2  # "item 17 (...)" before "item 175" for "item 17"
        elif item_id.startswith(needle):
            cls = 3
        elif word.search(title):
            cls = 4
        else:
            cls = 5
        keyed.append((cls, -int(pop[r]), r))
    keyed.sort()
    return [r for _, _, r in keyed[:limit]]
