"""Read item titles and categories (`--items FILE`, or MovieLens' movies.csv) and attach them to a Dataset.

Two layouts, header required, columns found by name (order free, extra columns ignored):
- "items":     `item_id,title[,categories]`, categories `|`-separated;
- "movielens": `movieId,title,genres`, genres `|`-separated, `(no genres listed)` meaning none.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from models.errors import InputError
from models.inputs.csv_file import _decoded_lines, read_header
from models.inputs.dataset import Dataset

MetadataFormat = Literal["items", "movielens"]
NO_GENRES = "(no genres listed)"  # MovieLens' marker for a movie without genres


@dataclass(frozen=True)
class _Layout:
    id_col: str
    title_col: str
    categories_col: str
    categories_required: bool
    none_marker: str | None


LAYOUTS: dict[MetadataFormat, _Layout] = {
    "items": _Layout("item_id", "title", "categories", categories_required=False, none_marker=None),
    "movielens": _Layout("movieId", "title", "genres", categories_required=True, none_marker=NO_GENRES),
}


@dataclass(frozen=True)
class ItemMetadata:
    """Metadata aligned to the item order it was read for (`item_ids` of `read_item_metadata`), length n_items.

    titles: None where the file has no row for the item. categories: [] where it has none (or no row);
    None when the file has no categories column. info: JSON-able counts for the manifest's source.
    """

    titles: list[str | None]
    categories: list[list[str]] | None
    info: dict[str, Any]


def read_item_metadata(path: str | Path, item_ids: Sequence[str], movielens: bool = False) -> ItemMetadata:
    """Parse the file row by row so that every problem names its line; keep the rows whose id is in `item_ids`.

    Every row is validated, matched or not (a bad file is bad whatever the interactions hold): field count,
    non-empty id and title, ids unique. Rows whose id is not in `item_ids` are counted in info["ignored_unknown"].
    """
    path = Path(path)
    fmt: MetadataFormat = "movielens" if movielens else "items"
    layout = LAYOUTS[fmt]
    row_of = {item: r for r, item in enumerate(item_ids)}
    if len(row_of) != len(item_ids):
        raise ValueError("item_ids must be distinct")
    titles: list[str | None] = [None] * len(item_ids)
    categories: list[list[str]] | None = None
    first_line: dict[str, int] = {}
    split_of: dict[str, list[str]] = {}  # raw field -> categories: genre strings repeat across movies
    matched = 0
    try:
        handle = open(path, "rb")  # noqa: SIM115 -- opened here so that an unreadable path is its own error
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror or e}") from e
    with handle:
        reader = csv.reader(_decoded_lines(handle, path), strict=True)  # strict: an unclosed quote at the end is an error
        header = read_header(reader, path)
        required = [layout.id_col, layout.title_col] + ([layout.categories_col] if layout.categories_required else [])
        missing = [c for c in required if c not in header]
        if missing:
            raise InputError(f"{path}: line 1: missing column(s) {', '.join(missing)}; header is {header}")
        used = [*required, *([layout.categories_col] if layout.categories_col in header else [])]
        repeated = sorted({c for c in used if header.count(c) > 1})
        if repeated:
            raise InputError(f"{path}: line 1: column(s) {', '.join(repeated)} given more than once; header is {header}")
        idi, ti = header.index(layout.id_col), header.index(layout.title_col)
        ci: int | None = None
        if layout.categories_col in header:
            ci = header.index(layout.categories_col)
            categories = [[] for _ in item_ids]
        width = len(header)
        end = reader.line_num
        try:
            for row in reader:
                # a record's first line: a quoted field may run over several lines, and line_num is its last
                line, end = end + 1, reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if len(row) != width:
                    raise InputError(f"{path}: line {line}: expected {width} fields, got {len(row)}")
                if end > line and any("\n" in row[c] or "\r" in row[c] for c in (idi, ti, ci) if c is not None):
                    # an unclosed quote would otherwise swallow the lines after it into one title
                    raise InputError(
                        f"{path}: line {line}: a quoted id, title or category runs on to line {end} (unclosed quote?)"
                    )
                item = row[idi].strip()
                if not item:
                    raise InputError(f"{path}: line {line}: empty {layout.id_col}")
                first = first_line.setdefault(item, line)
                if first != line:
                    raise InputError(f"{path}: line {line}: duplicate id {item!r} (first on line {first})")
                title = row[ti].strip()
                if not title:
                    raise InputError(f"{path}: line {line}: empty title for id {item!r}")
                r = row_of.get(item)
                if r is None:
                    continue
                matched += 1
                titles[r] = title
                if categories is not None and ci is not None:
                    raw = row[ci]
                    split = split_of.get(raw)
                    if split is None:
                        split = split_of[raw] = split_categories(raw, layout.none_marker)
                    categories[r] = list(split)  # a list per item: the cache's is shared
        except csv.Error as e:
            # named by the record's first line: where an unclosed quote opened, not where the reader gave up
            start, stop = end + 1, reader.line_num
            upto = f" (the record runs on to line {stop})" if stop > start else ""
            raise InputError(f"{path}: line {start}: malformed CSV: {e}{upto}") from e
    if not first_line:
        raise InputError(f"{path}: no item rows after the header")
    return ItemMetadata(
        titles=titles,
        categories=categories,
        info={
            "path": str(path),
            "format": fmt,
            "rows": len(first_line),
            "matched": matched,
            "ignored_unknown": len(first_line) - matched,
            "items_without_metadata": len(item_ids) - matched,
        },
    )


def split_categories(text: str, none_marker: str | None = None) -> list[str]:
    """`a| b||a` -> ['a', 'b']: split on `|`, strip, drop empties (and `none_marker`), first-seen order, no repeats."""
    parts = (p.strip() for p in text.split("|"))
    return list(dict.fromkeys(p for p in parts if p and p != none_marker))


def with_item_metadata(ds: Dataset, meta: ItemMetadata) -> Dataset:
    """A copy of `ds` with titles (an item without one is titled by its id), categories and source["items"] set.

    `meta` must have been read for `ds.item_ids`. X is shared, not copied (nothing here writes to it); the
    lists and the source dict are new, so `ds` is left as it was.
    """
    if len(meta.titles) != ds.n_items or (meta.categories is not None and len(meta.categories) != ds.n_items):
        raise ValueError(f"metadata for {len(meta.titles)} items given to a dataset of {ds.n_items} items")
    return dataclasses.replace(
        ds,
        user_ids=list(ds.user_ids),
        item_ids=list(ds.item_ids),
        item_titles=[t if t is not None else i for t, i in zip(meta.titles, ds.item_ids, strict=True)],
        item_categories=[list(c) for c in meta.categories] if meta.categories is not None else None,
        source={**ds.source, "items": dict(meta.info)},
    )
