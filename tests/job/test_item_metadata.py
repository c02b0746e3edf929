"""Item metadata (`--items FILE`, MovieLens' movies.csv): parsing, every rejected input, and attaching it to a Dataset."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import scipy.sparse as sp

from models.errors import InputError
from models.inputs.dataset import Dataset
from models.inputs.item_metadata import read_item_metadata, with_item_metadata

ITEMS_CSV = (
    "title,extra,item_id,categories\n"
    '"Crime and Punishment, a novel",x,b1,classics|crime\n'
    'Dune,,b2," sci-fi | classics ||sci-fi|"\n'
    '"Unknown, Book",,zzz,poetry\n'
    "  Emma  ,,b4,\n"
)


def test_items_file_quoted_titles_categories_unknown_and_missing(tmp_path):
    p = tmp_path / "items.csv"
    p.write_text(ITEMS_CSV)
    meta = read_item_metadata(p, ["b4", "b3", "b2", "b1"])
    assert meta.titles == ["Emma", None, "Dune", "Crime and Punishment, a novel"]
    assert meta.categories == [[], [], ["sci-fi", "classics"], ["classics", "crime"]]
    assert meta.info == {
        "path": str(p),
        "format": "items",
        "rows": 4,
        "matched": 3,
        "ignored_unknown": 1,
        "items_without_metadata": 1,
    }


def test_items_file_without_categories_column(tmp_path):
    p = tmp_path / "items.csv"
    p.write_bytes('\ufeffitem_id,title\r\n7,Seven\r\n\r\n8,"Eight, ""quoted"""\r\n'.encode())
    meta = read_item_metadata(p, ["8", "7", "9"])
    assert meta.titles == ['Eight, "quoted"', "Seven", None]
    assert meta.categories is None
    assert meta.info["rows"] == 2 and meta.info["items_without_metadata"] == 1


def test_movielens_movies_csv(tmp_path):
    p = tmp_path / "movies.csv"
    p.write_text(
        "movieId,title,genres\n"
        "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n"
        '11,"American President, The (1995)",Comedy|Drama|Romance\n'
        "131260,Rentun Ruusu (2001),(no genres listed)\n"
        "5,Father of the Bride Part II (1995),Comedy\n"
    )
    meta = read_item_metadata(p, ["11", "131260", "1", "2"], movielens=True)
    assert meta.titles == ["American President, The (1995)", "Rentun Ruusu (2001)", "Toy Story (1995)", None]
    assert meta.categories == [
        ["Comedy", "Drama", "Romance"],
        [],
        ["Adventure", "Animation", "Children", "Comedy", "Fantasy"],
        [],
    ]
    assert meta.info["format"] == "movielens"
    assert (meta.info["rows"], meta.info["matched"], meta.info["ignored_unknown"], meta.info["items_without_metadata"]) == (
        4,
        3,
        1,
        1,
    )


def test_movielens_layout_needs_its_own_columns(tmp_path):
    p = tmp_path / "movies.csv"
    p.write_text("item_id,title\n1,Toy Story\n")
    with pytest.raises(InputError, match=r"movies\.csv: line 1: missing column\(s\) movieId, genres; header is"):
        read_item_metadata(p, ["1"], movielens=True)


ERRORS = {
    "missing-title-column": ("item_id,name\nb1,Dune\n", r"line 1: missing column\(s\) title; header is \['item_id', 'name'\]"),
    "missing-id-column": ("id,title\nb1,Dune\n", r"line 1: missing column\(s\) item_id; header is \['id', 'title'\]"),
    "repeated-column": ("item_id,title,title\nb1,Dune,Dune\n", r"line 1: column\(s\) title given more than once"),
    "field-count": ("item_id,title\nb1,Dune\nb2,Emma,extra\n", r"line 3: expected 2 fields, got 3"),
    "blank-id": ("item_id,title\nb1,Dune\n  ,Emma\n", r"line 3: empty item_id"),
    "duplicate-id": ("item_id,title\nb1,Dune\nb2,Emma\nb1,Dune again\n", r"line 4: duplicate id 'b1' \(first on line 2\)"),
    "duplicate-unknown-id": ("item_id,title\nq,Dune\nb2,Emma\nq,Dune again\n", r"line 4: duplicate id 'q' \(first on line 2\)"),
    "empty-title": ("item_id,title\nb1,Dune\nb2,  \n", r"line 3: empty title for id 'b2'"),
    "empty-title-unknown-id": ("item_id,title\nb1,Dune\nq,\n", r"line 3: empty title for id 'q'"),
    "bad-utf8": (b"item_id,title\nb1,Dune\nb2,Caf\xe9\n", r"line 3: not UTF-8"),
    "empty-file": ("", r"empty file"),
    "header-only": ("item_id,title,categories\n", r"no item rows after the header"),
    "header-and-blank-lines": ("item_id,title\n\n\n", r"no item rows after the header"),
    "unclosed-quote-at-end": ('item_id,title\nb1,Dune\nb2,"Emma\n', r"line 3: malformed CSV: unexpected end of data$"),
    "unclosed-quote-inside": (
        'item_id,title\nb1,"Dune\nb2,Emma\nb3,Persuasion\n\nb4,"Sense, Sensibility"\n',
        r"line 2: malformed CSV: ',' expected after '\"' \(the record runs on to line 6\)",
    ),
    "title-over-lines": (
        'item_id,title\nb1,"Dune\nb2,Emma"\nb3,Persuasion\n',
        r"line 2: a quoted id, title or category runs on to line 3",
    ),
    "stray-quote": ('item_id,title\nb1,Dune\nb2,"Emma" (1815)\n', r"line 3: malformed CSV"),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_bad_item_file_rejected(tmp_path, case):
    content, message = ERRORS[case]
    p = tmp_path / f"{case}.csv"
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content)
    with pytest.raises(InputError, match="^" + re.escape(f"{p}: ") + message):
        read_item_metadata(p, ["b1", "b2"])


def test_unreadable_path(tmp_path):
    with pytest.raises(InputError, match=r"nope\.csv: cannot read"):
        read_item_metadata(tmp_path / "nope.csv", ["b1"])
    with pytest.raises(InputError, match=r"cannot read"):
        read_item_metadata(tmp_path, ["b1"])


def test_with_item_metadata_copies_and_aligns_to_item_order(tmp_path):
    item_ids = ["m3", "m1", "m9", "m2"]
    X = sp.csr_matrix(np.array([[1, 0, 2, 0], [0, 1, 0, 1]], dtype=np.float32))
    ds = Dataset(X=X, user_ids=["u1", "u2"], item_ids=list(item_ids), source={"kind": "csv", "path": "r.csv"})
    before = copy.deepcopy(ds)
    p = tmp_path / "items.csv"
    # the file's order differs from the data's, and has an item the data lacks (m7) and lacks one it has (m9)
    p.write_text('item_id,title,categories\nm1,One,a|b\nm7,Seven,c\nm2,"Two, too",b\nm3,Three,\n')
    expected_title = {"m1": "One", "m2": "Two, too", "m3": "Three"}
    expected_cats = {"m1": ["a", "b"], "m2": ["b"], "m3": []}
    out = with_item_metadata(ds, read_item_metadata(p, ds.item_ids))
    assert out.item_titles == [expected_title.get(i, i) for i in item_ids]
    assert out.item_categories == [expected_cats.get(i, []) for i in item_ids]
    assert out.item_ids == item_ids and out.user_ids == ["u1", "u2"]
    np.testing.assert_array_equal(out.X.toarray(), X.toarray())
    assert out.source["kind"] == "csv" and out.source["items"]["ignored_unknown"] == 1
    assert out.source["items"]["items_without_metadata"] == 1
    # the original is untouched, and later edits of the copy do not reach it
    assert ds.item_titles is None and ds.item_categories is None and "items" not in ds.source
    out.item_ids.append("x")
    out.source["extra"] = 1
    assert ds.item_ids == before.item_ids and ds.source == before.source and ds.user_ids == before.user_ids
    assert ds.fingerprint() == before.fingerprint()


def test_with_item_metadata_rejects_metadata_for_other_items(tmp_path):
    p = tmp_path / "items.csv"
    p.write_text("item_id,title\na,A\n")
    ds = Dataset(X=sp.csr_matrix(np.ones((1, 2), dtype=np.float32)), user_ids=["u"], item_ids=["a", "b"])
    with pytest.raises(ValueError, match="metadata for 3 items"):
        with_item_metadata(ds, read_item_metadata(p, ["a", "b", "c"]))


def test_movielens_25m_size_file(tmp_path):
    n = 62_500
    genres = ["Action", "Comedy", "Drama", "Romance", "Thriller", "Horror", "Children"]
    lines = ["movieId,title,genres"]
    for m in range(n):
        g = _genres_of(m, genres)
        lines.append(f'{m},"Movie {m}, The ({1900 + m % 120})",{g}')
    p = tmp_path / "movies.csv"
    p.write_text("\n".join(lines) + "\n")
    ids = [str(m) for m in range(0, n, 2)] + [f"x{m}" for m in range(100)]
    meta = read_item_metadata(p, ids, movielens=True)
    assert meta.info["rows"] == n and meta.info["matched"] == n // 2 and meta.info["ignored_unknown"] == n - n // 2
    assert meta.info["items_without_metadata"] == 100
    assert meta.titles[5] == "Movie 10, The (1910)" and meta.categories is not None
    assert meta.categories[5] == ["Romance", "Thriller"]  # movie 10: genres[10 % 7 : 10 % 7 + 1 + 10 % 3]
    assert meta.categories[0] == [] and meta.titles[0] == "Movie 0, The (1900)"  # movie 0: (no genres listed)


def _genres_of(m: int, genres: list[str]) -> str:
    """Genres of synthetic movie m: every 11th has none; the others a run of 1-3 genres."""
    if m % 11 == 0:
        return "(no genres listed)"
    return "|".join(genres[m % 7 : m % 7 + 1 + m % 3])


def test_items_flag_through_the_cli(tmp_path):
    """--items reaches the artifact: titles and categories per item, counts in the manifest, category measures."""
    import json

    from support.artifacts import build_in_process

    rng = np.random.default_rng(0)
    rows = ["user_id,item_id"] + [f"u{u},b{i}" for u in range(60) for i in sorted(set(rng.integers(0, 12, 6).tolist()))]
    (tmp_path / "ratings.csv").write_text("\n".join(rows) + "\n")
    meta = ["item_id,title,categories"] + [f'b{i},"Book {i}, vol. {i}",{"odd" if i % 2 else "even"}|all' for i in range(12)]
    meta.append("zz,Not in the data,none")
    (tmp_path / "items.csv").write_text("\n".join(meta) + "\n")
    out = tmp_path / "art"
    args = ["--dataset", "csv", "--input", str(tmp_path / "ratings.csv"), "--items", str(tmp_path / "items.csv")]
    proc = build_in_process([*args, "--out", str(out), "--k", "4", "--quiet", "--no-diagnostics", "--evaluate"])
    assert proc.returncode == 0, proc.stderr
    vdir = out / "versions" / (out / "CURRENT").read_text().strip()
    items = {it["id"]: it for it in json.loads((vdir / "items.json").read_text())}
    for i in range(12):
        if f"b{i}" in items:
            assert items[f"b{i}"]["title"] == f"Book {i}, vol. {i}"
            assert items[f"b{i}"]["categories"] == ["odd" if i % 2 else "even", "all"]
    manifest = json.loads((vdir / "manifest.json").read_text())
    assert manifest["dataset"]["items"]["ignored_unknown"] == 1 and manifest["has_metadata"] is True
    evaluation = json.loads((vdir / "evaluation.json").read_text())
    assert all(r["category_precision_at_10"] == 1.0 for r in evaluation["results"])  # every item shares "all"

    (tmp_path / "other.csv").write_text("item_id,title\nx1,X\nx2,Y\n")
    bad = build_in_process([*args[:-1], str(tmp_path / "other.csv"), "--out", str(out), "--quiet"])
    assert bad.returncode == 2 and "none of its 2 ids is an item of the interaction data" in bad.stderr
