"""Read the goodbooks folder layout (ratings, books, shelves) into a Dataset with titles and genres."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

from models.errors import InputError
from models.inputs.csv_file import read_interactions_csv
from models.inputs.dataset import Dataset, DuplicatePolicy

# Genre shelves and the spellings that mean the same genre; the canonical name is the key.
GENRE_SHELVES: dict[str, tuple[str, ...]] = {
    "fantasy": ("fantasy",),
    "science-fiction": ("science-fiction", "sci-fi"),
    "romance": ("romance",),
    "mystery": ("mystery",),
    "thriller": ("thriller",),
    "horror": ("horror",),
    "historical-fiction": ("historical-fiction",),
    "non-fiction": ("non-fiction", "nonfiction"),
    "biography": ("biography",),
    "memoir": ("memoir",),
    "young-adult": ("young-adult", "ya"),
    "classics": ("classics",),
    "poetry": ("poetry",),
    "philosophy": ("philosophy",),
    "self-help": ("self-help",),
    "childrens": ("childrens", "children"),
    "graphic-novels": ("graphic-novels", "comics", "manga"),
    "humor": ("humor",),
    "crime": ("crime", "true-crime"),
    "paranormal": ("paranormal", "vampires"),
    "dystopian": ("dystopian",),
    "history": ("history",),
    "science": ("science",),
    "business": ("business", "economics"),
    "religion": ("religion", "christian", "spirituality"),
    "psychology": ("psychology",),
    "travel": ("travel",),
    "chick-lit": ("chick-lit",),
}
GENRE_SHARE = 0.1  # a shelf counts when used at least this share of the book's most used shelf


def read_goodbooks(
    folder: str | Path,
    min_value: float | None = None,
    binarize: bool = True,
    duplicates: DuplicatePolicy = "sum",
) -> Dataset:
    """ratings.csv (user_id, book_id, rating) -> X; books.csv -> titles; shelves -> genres.

    Items are `book_id`s; shelves join on `goodreads_book_id` (the folder README says so).
    """
    folder = Path(folder)
    for name in ("ratings.csv", "books.csv", "book_tags.csv", "tags.csv"):
        if not (folder / name).is_file():
            raise InputError(f"{folder / name}: missing (expected the goodbooks folder layout)")
    ds = read_interactions_csv(
        folder / "ratings.csv",
        user_col="user_id",
        item_col="book_id",
        value_col="rating",
        min_value=min_value,
        binarize=binarize,
        duplicates=duplicates,
    )
    books = _rows(folder / "books.csv", ("book_id", "goodreads_book_id", "title"))
    title_of = {b["book_id"]: b["title"].strip() for b in books}
    goodreads_of = {b["book_id"]: b["goodreads_book_id"] for b in books}
    tag_name = {t["tag_id"]: t["tag_name"] for t in _rows(folder / "tags.csv", ("tag_id", "tag_name"))}
    alias = {shelf: genre for genre, shelves in GENRE_SHELVES.items() for shelf in shelves}
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    top: dict[str, int] = defaultdict(int)
    for r in _rows(folder / "book_tags.csv", ("goodreads_book_id", "tag_id", "count")):
        gid, c = r["goodreads_book_id"], int(float(r["count"]))
        top[gid] = max(top[gid], c)
        genre = alias.get(tag_name.get(r["tag_id"], ""))
        if genre is not None:
            counts[gid][genre] = max(counts[gid].get(genre, 0), c)
    categories: list[list[str]] = []
    for item in ds.item_ids:
        gid = goodreads_of.get(item, "")
        cats = [g for g, c in counts.get(gid, {}).items() if c >= GENRE_SHARE * top[gid]]
        categories.append(sorted(cats))
    ds.item_titles = [title_of.get(i, f"book {i}") for i in ds.item_ids]
    ds.item_categories = categories
    ds.source.update({"kind": "goodbooks", "path": str(folder), "genre_share": GENRE_SHARE})
    return ds


def _rows(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{path}: line 1: missing column(s) {', '.join(missing)}")
        return list(reader)
