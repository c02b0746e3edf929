"""Imported factorisations: every accepted layout lands in the data's id order; every bad input is named.

The expected matrices are built here with list.index over the data's ids, row by row, independently of the reader.
"""

from __future__ import annotations

import re
from pathlib import Path

import implicit
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from models.errors import InputError
from models.inputs.factors import parse_import_spec, read_imported_factors, users_from_items

ITEMS = [f"i{j}" for j in range(12)]
USERS = [f"u{j}" for j in range(9)]
K = 4


def write_ids(path: Path, ids: list[str]) -> Path:
    path.write_text("".join(f"{x}\n" for x in ids), encoding="utf-8")
    return path


def subset(ids: list[str], n: int, seed: int) -> list[str]:
    """n of the data's ids in a shuffled order (the order of the imported rows)."""
    rng = np.random.default_rng(seed)
    return [ids[j] for j in rng.permutation(len(ids))[:n]]


def expected_in_data_order(F: np.ndarray, file_ids: list[str], data_ids: list[str]) -> np.ndarray:
    out = np.zeros((len(data_ids), F.shape[1]))
    for r, x in enumerate(file_ids):
        out[data_ids.index(x)] = F[r]
    return out


def raises(where: Path | str, problem: str):
    """The error names the file, then (somewhere after it) the problem."""
    return pytest.raises(InputError, match=re.escape(str(where)) + ".*" + re.escape(problem))


def npy_dir(root: Path, items: int = 8, users: int | None = 6, k: int = K, seed: int = 0):
    """root with item (and user) factors of shuffled subsets of the data's ids: (Fq, item ids, Fp, user ids)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    q_ids = subset(ITEMS, items, seed)
    Fq = rng.standard_normal((items, k)).astype(np.float32)
    np.save(root / "item_factors.npy", Fq)
    write_ids(root / "item_ids.txt", q_ids)
    if users is None:
        return Fq, q_ids, None, None
    p_ids = subset(USERS, users, seed + 1)
    Fp = rng.standard_normal((users, k))
    np.save(root / "user_factors.npy", Fp)
    write_ids(root / "user_ids.txt", p_ids)
    return Fq, q_ids, Fp, p_ids


def write_parquet(path: Path, ids: list, F: np.ndarray, id_name: str = "item_id", fixed: bool = True, **extra) -> Path:
    values = pa.array(F.ravel(), type=pa.float32())
    vectors = (
        pa.FixedSizeListArray.from_arrays(values, F.shape[1])
        if fixed
        else pa.ListArray.from_arrays(pa.array(np.arange(0, F.size + 1, F.shape[1]), type=pa.int32()), values)
    )
    columns = {id_name: pa.array(ids), "vector": vectors, **extra}
    pq.write_table(pa.table(columns), path, row_group_size=3)  # several row groups: the reader must join chunks
    return path


# ---------------------------------------------------------------- NAME=PATH


def test_parse_import_spec_splits_on_the_first_equals_sign():
    assert parse_import_spec("two-tower=imports/tt") == ("two-tower", Path("imports/tt"))
    assert parse_import_spec("als.v2_1=a=b.npz") == ("als.v2_1", Path("a=b.npz"))
    assert parse_import_spec("x" * 64 + "=p")[0] == "x" * 64


@pytest.mark.parametrize("spec", ["Two=p", "-a=p", "a b=p", "a/b=p", "=p", "x" * 65 + "=p", "a\n=p", "é=p"])
def test_parse_import_spec_rejects_names_unfit_for_urls(spec):
    with pytest.raises(InputError, match=r"--import-factors .*model name"):
        parse_import_spec(spec)


@pytest.mark.parametrize("spec", ["imports/tt", "tt="])
def test_parse_import_spec_needs_name_and_path(spec):
    with pytest.raises(InputError, match=r"expected NAME=PATH"):
        parse_import_spec(spec)


# ---------------------------------------------------------------- round trips


def test_npy_directory_round_trip_with_users(tmp_path):
    Fq, q_ids, Fp, p_ids = npy_dir(tmp_path / "tt")
    got = read_imported_factors(tmp_path / "tt", ITEMS, USERS)
    assert got.Q.dtype == np.float64 and got.Q.shape == (len(ITEMS), K)
    np.testing.assert_array_equal(got.Q, expected_in_data_order(Fq, q_ids, ITEMS))
    assert got.P is not None
    np.testing.assert_array_equal(got.P, expected_in_data_order(Fp, p_ids, USERS))
    missing_items = [j for j, x in enumerate(ITEMS) if x not in q_ids]
    assert len(missing_items) == 4 and not got.Q[missing_items].any()
    assert got.info == {
        "source": "imported",
        "path": str(tmp_path / "tt"),
        "format": "npy",
        "k": K,
        "item_rows": 8,
        "items_without_factors": 4,
        "user_rows": 6,
        "users_without_factors": 3,
    }


def test_npy_directory_items_only(tmp_path):
    Fq, q_ids, _, _ = npy_dir(tmp_path, items=12, users=None)
    got = read_imported_factors(tmp_path, ITEMS, USERS)
    np.testing.assert_array_equal(got.Q, expected_in_data_order(Fq, q_ids, ITEMS))
    assert got.P is None
    assert (got.info["user_rows"], got.info["users_without_factors"], got.info["items_without_factors"]) == (None, None, 0)


def test_id_files_tolerate_crlf_trailing_spaces_bom_and_a_final_empty_line(tmp_path):
    Fq, q_ids, _, _ = npy_dir(tmp_path, items=3, users=None)
    (tmp_path / "item_ids.txt").write_bytes(("\ufeff" + "\r\n".join(f"{x}  " for x in q_ids) + "\r\n\n").encode())
    got = read_imported_factors(tmp_path, ITEMS, USERS)
    np.testing.assert_array_equal(got.Q, expected_in_data_order(Fq, q_ids, ITEMS))


def test_implicit_saved_model_read_back_equals_its_factors(tmp_path):
    rng = np.random.default_rng(3)
    user_items = sp.random(len(USERS), len(ITEMS), density=0.4, format="csr", random_state=rng, dtype=np.float32)
    user_items.data[:] = 1.0
    with threadpool_limits(1, "blas"):  # implicit warns about a multi-threaded BLAS when constructed
        model = implicit.als.AlternatingLeastSquares(factors=4, iterations=2, random_state=0, use_gpu=False)
        model.fit(user_items, show_progress=False)
    model.save(tmp_path / "model.npz")
    write_ids(tmp_path / "item_ids.txt", ITEMS)
    write_ids(tmp_path / "user_ids.txt", USERS)
    for path in (tmp_path / "model.npz", tmp_path):
        got = read_imported_factors(path, ITEMS, USERS)
        assert got.P is not None
        np.testing.assert_array_equal(got.Q, model.item_factors.astype(np.float64))
        np.testing.assert_array_equal(got.P, model.user_factors.astype(np.float64))
        assert got.info["format"] == "implicit-npz" and got.info["k"] == model.item_factors.shape[1]


def test_implicit_layout_with_shuffled_subsets_and_extra_keys(tmp_path):
    rng = np.random.default_rng(4)
    q_ids, p_ids = subset(ITEMS, 7, 5), subset(USERS, 5, 6)
    Fq, Fp = rng.standard_normal((7, 3)).astype(np.float32), rng.standard_normal((5, 3)).astype(np.float32)
    np.savez(tmp_path / "als.npz", user_factors=Fp, item_factors=Fq, regularization=0.01, dtype="float32", factors=3)
    write_ids(tmp_path / "item_ids.txt", q_ids)
    write_ids(tmp_path / "user_ids.txt", p_ids)
    got = read_imported_factors(tmp_path, ITEMS, USERS)
    assert got.P is not None
    np.testing.assert_array_equal(got.Q, expected_in_data_order(Fq, q_ids, ITEMS))
    np.testing.assert_array_equal(got.P, expected_in_data_order(Fp, p_ids, USERS))
    assert (got.info["items_without_factors"], got.info["users_without_factors"]) == (5, 4)


def test_parquet_directory_round_trip_fixed_size_lists(tmp_path):
    rng = np.random.default_rng(7)
    q_ids, p_ids = subset(ITEMS, 10, 8), subset(USERS, 7, 9)
    Fq, Fp = rng.standard_normal((10, K)).astype(np.float32), rng.standard_normal((7, K)).astype(np.float32)
    write_parquet(tmp_path / "item_factors.parquet", q_ids, Fq, id_name="item_id")
    write_parquet(tmp_path / "user_factors.parquet", p_ids, Fp, id_name="id", popularity=pa.array(np.arange(7)))
    got = read_imported_factors(tmp_path, ITEMS, USERS)
    assert got.P is not None
    np.testing.assert_array_equal(got.Q, expected_in_data_order(Fq, q_ids, ITEMS))
    np.testing.assert_array_equal(got.P, expected_in_data_order(Fp, p_ids, USERS))
    assert (got.info["format"], got.info["item_rows"], got.info["user_rows"]) == ("parquet", 10, 7)


def test_parquet_file_with_plain_lists_integer_ids_and_an_unnamed_id_column(tmp_path):
    items = [str(100 + j) for j in range(9)]
    rng = np.random.default_rng(8)
    file_ids = [int(x) for x in subset(items, 6, 12)]
    F = rng.standard_normal((6, 5)).astype(np.float32)
    path = write_parquet(tmp_path / "tt_items.parquet", file_ids, F, id_name="sku", fixed=False, score=pa.array(rng.random(6)))
    # a user file beside it is not read when PATH is the item file itself
    write_parquet(tmp_path / "user_factors.parquet", USERS[:2], F[:2], id_name="user_id")
    got = read_imported_factors(path, items, USERS)
    np.testing.assert_array_equal(got.Q, expected_in_data_order(F, [str(x) for x in file_ids], items))
    assert got.P is None and got.info["k"] == 5


def test_users_from_items_is_the_sum_of_consumed_item_vectors(tmp_path):
    rng = np.random.default_rng(11)
    X = sp.random(9, 12, density=0.3, format="csr", random_state=rng, dtype=np.float32)
    Q = rng.standard_normal((12, 3))
    P = users_from_items(X, Q)
    dense = X.toarray().astype(np.float64)
    expected = np.array([[sum(dense[u, i] * Q[i, c] for i in range(12)) for c in range(3)] for u in range(9)])
    assert P.shape == (9, 3) and P.dtype == np.float64
    np.testing.assert_allclose(P, expected, rtol=1e-12, atol=1e-12)
    tiny = sp.csr_matrix(np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]))
    np.testing.assert_array_equal(users_from_items(tiny, np.array([[1.0, 2.0], [5.0, 7.0], [3.0, -1.0]])), [[4.0, 1.0], [0, 0]])


# ---------------------------------------------------------------- layout errors


def test_missing_path(tmp_path):
    with raises(tmp_path / "nope", "no such file or directory"):
        read_imported_factors(tmp_path / "nope", ITEMS, USERS)


def test_directory_without_a_recognised_layout_lists_what_was_expected(tmp_path):
    (tmp_path / "README.txt").write_text("factors\n")
    with raises(tmp_path, "no factor files found") as e:
        read_imported_factors(tmp_path, ITEMS, USERS)
    for expected in ("item_factors.npy", "item_ids.txt", ".npz", "item_factors.parquet"):
        assert expected in str(e.value)


def test_file_of_an_unknown_kind(tmp_path):
    path = tmp_path / "factors.csv"
    path.write_text("a,b\n")
    with raises(path, "not a recognised factor file"):
        read_imported_factors(path, ITEMS, USERS)


def test_unreadable_id_file(tmp_path):
    npy_dir(tmp_path, users=None)
    (tmp_path / "item_ids.txt").unlink()
    (tmp_path / "item_ids.txt").mkdir()  # exists, yet cannot be read as a file
    with raises(tmp_path / "item_ids.txt", "cannot read"):
        read_imported_factors(tmp_path, ITEMS, USERS)


def test_vector_file_that_is_not_npy(tmp_path):
    npy_dir(tmp_path, users=None)
    (tmp_path / "item_factors.npy").write_bytes(b"1,2,3\n4,5,6\n")
    with raises(tmp_path / "item_factors.npy", "not a .npy file"):
        read_imported_factors(tmp_path, ITEMS, USERS)


def test_two_layouts_in_one_directory(tmp_path):
    Fq, q_ids, _, _ = npy_dir(tmp_path, users=None)
    write_parquet(tmp_path / "item_factors.parquet", q_ids, Fq)
    with raises(tmp_path, "more than one layout (npy, parquet)"):
        read_imported_factors(tmp_path, ITEMS, USERS)


def test_item_factors_without_item_ids(tmp_path):
    npy_dir(tmp_path, users=None)
    (tmp_path / "item_ids.txt").unlink()
    with raises(tmp_path, "item_factors.npy without item_ids.txt"):
        read_imported_factors(tmp_path, ITEMS, USERS)


def test_user_factors_without_user_ids(tmp_path):
    npy_dir(tmp_path)
    (tmp_path / "user_ids.txt").unlink()
    with raises(tmp_path, f"user_factors.npy without user_ids.txt ({tmp_path / 'user_ids.txt'} is missing)"):
        read_imported_factors(tmp_path, ITEMS, USERS)


def test_user_ids_without_user_factors(tmp_path):
    npy_dir(tmp_path)
    (tmp_path / "user_factors.npy").unlink()
    with raises(tmp_path, "user_ids.txt without user_factors.npy"):
        read_imported_factors(tmp_path, ITEMS, USERS)


def test_user_factors_without_item_factors(tmp_path):
    npy_dir(tmp_path)
    (tmp_path / "item_factors.npy").unlink()
    (tmp_path / "item_ids.txt").unlink()
    with raises(tmp_path, "item_factors.npy is missing"):
        read_imported_factors(tmp_path, ITEMS, USERS)


def test_npz_without_user_ids_beside_it(tmp_path):
    np.savez(tmp_path / "model.npz", user_factors=np.ones((2, 2)), item_factors=np.ones((2, 2)))
    write_ids(tmp_path / "item_ids.txt", ITEMS[:2])
    with raises(tmp_path / "model.npz", "user_ids.txt is missing"):
        read_imported_factors(tmp_path / "model.npz", ITEMS, USERS)


def test_npz_without_the_factor_arrays(tmp_path):
    np.savez(tmp_path / "model.npz", item_factors=np.ones((2, 2)), similarity=np.ones(3))
    write_ids(tmp_path / "item_ids.txt", ITEMS[:2])
    write_ids(tmp_path / "user_ids.txt", USERS[:2])
    with raises(tmp_path / "model.npz", "no array user_factors (holds item_factors, similarity)"):
        read_imported_factors(tmp_path, ITEMS, USERS)


def test_npz_that_is_not_an_archive(tmp_path):
    np.save(tmp_path / "model.npy", np.ones((2, 2)))
    (tmp_path / "model.npy").rename(tmp_path / "model.npz")
    write_ids(tmp_path / "item_ids.txt", ITEMS[:2])
    write_ids(tmp_path / "user_ids.txt", USERS[:2])
    with raises(tmp_path / "model.npz", "not an .npz archive"):
        read_imported_factors(tmp_path / "model.npz", ITEMS, USERS)


def test_directory_with_two_npz_files(tmp_path):
    for name in ("a.npz", "b.npz"):
        np.savez(tmp_path / name, user_factors=np.ones((2, 2)), item_factors=np.ones((2, 2)))
    with raises(tmp_path, "holds 2 .npz files (a.npz, b.npz)"):
        read_imported_factors(tmp_path, ITEMS, USERS)


# ---------------------------------------------------------------- content errors


def test_empty_vector_file(tmp_path):
    npy_dir(tmp_path, users=None)
    np.save(tmp_path / "item_factors.npy", np.zeros((0, K)))
    with raises(tmp_path / "item_factors.npy", "empty (0 rows)"):
        read_imported_factors(tmp_path, ITEMS, USERS)


def test_empty_id_file(tmp_path):
    npy_dir(tmp_path, users=None)
    (tmp_path / "item_ids.txt").write_text("\n")
    with raises(tmp_path / "item_ids.txt", "empty file (no ids)"):
        read_imported_factors(tmp_path, ITEMS, USERS)


def test_vector_file_not_2d(tmp_path):
    npy_dir(tmp_path, users=None)
    np.save(tmp_path / "item_factors.npy", np.ones(8))
    with raises(tmp_path / "item_factors.npy", "expected a 2-D array (rows, k), got shape (8,)"):
        read_imported_factors(tmp_path, ITEMS, USERS)


def test_vector_file_with_k_zero(tmp_path):
    npy_dir(tmp_path, users=None)
    np.save(tmp_path / "item_factors.npy", np.ones((8, 0)))
    with raises(tmp_path / "item_factors.npy", "k = 0"):
        read_imported_factors(tmp_path, ITEMS, USERS)


def test_vector_file_with_non_numeric_dtype(tmp_path):
    npy_dir(tmp_path, users=None)
    np.save(tmp_path / "item_factors.npy", np.full((8, K), "a"))
    with raises(tmp_path / "item_factors.npy", "dtype <U1 is not numeric"):
        read_imported_factors(tmp_path, ITEMS, USERS)


def test_rows_and_ids_differ_in_number(tmp_path):
    _, q_ids, _, _ = npy_dir(tmp_path, users=None)
    write_ids(tmp_path / "item_ids.txt", q_ids[:5])
    with raises(tmp_path / "item_factors.npy", f"has 8 rows but {tmp_path / 'item_ids.txt'} has 5 ids"):
        read_imported_factors(tmp_path, ITEMS, USERS)


def test_nan_and_inf_are_counted_and_the_first_row_named(tmp_path):
    Fq, q_ids, _, _ = npy_dir(tmp_path, users=None)
    Fq[5, 0], Fq[2, 3], Fq[5, 1] = np.nan, np.inf, -np.inf
    np.save(tmp_path / "item_factors.npy", Fq)
    with raises(tmp_path / "item_factors.npy", f"3 values are NaN or inf; first in row 2 (id {q_ids[2]!r})"):
        read_imported_factors(tmp_path, ITEMS, USERS)


def test_duplicate_id_names_both_lines(tmp_path):
    _, q_ids, _, _ = npy_dir(tmp_path, users=None)
    write_ids(tmp_path / "item_ids.txt", [*q_ids[:7], q_ids[2]])
    with raises(tmp_path / "item_ids.txt", f"line 8: duplicate id {q_ids[2]!r} (first on line 3)"):
        read_imported_factors(tmp_path, ITEMS, USERS)


def test_blank_id_line(tmp_path):
    _, q_ids, _, _ = npy_dir(tmp_path, users=None)
    (tmp_path / "item_ids.txt").write_text("\n".join([*q_ids[:3], "  ", *q_ids[4:]]) + "\n")
    with raises(tmp_path / "item_ids.txt", "line 4: blank id"):
        read_imported_factors(tmp_path, ITEMS, USERS)


def test_id_file_not_utf8(tmp_path):
    _, q_ids, _, _ = npy_dir(tmp_path, users=None)
    (tmp_path / "item_ids.txt").write_bytes("\n".join(q_ids[:7]).encode() + b"\ncaf\xe9\n")
    with raises(tmp_path / "item_ids.txt", "line 8: not UTF-8"):
        read_imported_factors(tmp_path, ITEMS, USERS)


def test_ids_unknown_to_the_data(tmp_path):
    _, q_ids, _, _ = npy_dir(tmp_path, users=None)
    write_ids(tmp_path / "item_ids.txt", [*q_ids[:5], "x1", "x2", "x3"])
    with raises(tmp_path / "item_ids.txt", "3 item ids are not in the interaction data (first: 'x1', 'x2', 'x3')"):
        read_imported_factors(tmp_path, ITEMS, USERS)


def test_unknown_ids_show_at_most_five(tmp_path):
    npy_dir(tmp_path, users=None)
    write_ids(tmp_path / "item_ids.txt", ["i0", *(f"x{j}" for j in range(7))])
    with raises(tmp_path, "7 item ids are not in the interaction data (first: 'x0', 'x1', 'x2', 'x3', 'x4')"):
        read_imported_factors(tmp_path, ITEMS, USERS)


def test_unknown_user_ids(tmp_path):
    _, _, _, p_ids = npy_dir(tmp_path)
    write_ids(tmp_path / "user_ids.txt", [*p_ids[:5], "nobody"])
    with raises(tmp_path / "user_ids.txt", "1 user ids are not in the interaction data (first: 'nobody')"):
        read_imported_factors(tmp_path, ITEMS, USERS)


def test_k_differs_between_users_and_items(tmp_path):
    _, _, Fp, _ = npy_dir(tmp_path)
    np.save(tmp_path / "user_factors.npy", Fp[:, :3])
    with raises(tmp_path / "user_factors.npy", f"has k = 3 but {tmp_path / 'item_factors.npy'} has k = 4"):
        read_imported_factors(tmp_path, ITEMS, USERS)


def test_all_zero_item_factors(tmp_path):
    npy_dir(tmp_path, users=None)
    np.save(tmp_path / "item_factors.npy", np.zeros((8, K)))
    with raises(tmp_path / "item_factors.npy", "all item factors are zero (nothing to serve)"):
        read_imported_factors(tmp_path, ITEMS, USERS)


# ---------------------------------------------------------------- Parquet errors


def test_parquet_ragged_plain_lists_name_the_row(tmp_path):
    path = tmp_path / "item_factors.parquet"
    vectors = pa.array([[1.0, 2.0], [3.0, 4.0], [5.0], [6.0, 7.0]], type=pa.list_(pa.float64()))
    pq.write_table(pa.table({"item_id": ITEMS[:4], "vector": vectors}), path)
    with raises(path, "row 2 (id 'i2') has 1 values but row 0 has 2"):
        read_imported_factors(tmp_path, ITEMS, USERS)


def test_parquet_duplicate_ids_name_both_rows(tmp_path):
    path = write_parquet(tmp_path / "item_factors.parquet", ["i3", "i1", "i5", "i1"], np.ones((4, K)))
    with raises(path, "row 3: duplicate id 'i1' (first on row 1)"):
        read_imported_factors(path, ITEMS, USERS)


def test_parquet_nan_names_row_and_id(tmp_path):
    F = np.ones((5, K))
    F[3, 2] = np.nan
    path = write_parquet(tmp_path / "item_factors.parquet", ["i3", "i1", "i5", "i7", "i0"], F)
    with raises(path, "1 values are NaN or inf; first in row 3 (id 'i7')"):
        read_imported_factors(path, ITEMS, USERS)


def test_parquet_id_column_ambiguous(tmp_path):
    path = write_parquet(tmp_path / "x.parquet", ITEMS[:3], np.ones((3, K)), id_name="sku", title=pa.array(["a", "b", "c"]))
    with raises(path, "cannot tell the id column"):
        read_imported_factors(path, ITEMS, USERS)


def test_parquet_without_a_list_column(tmp_path):
    path = tmp_path / "item_factors.parquet"
    pq.write_table(pa.table({"item_id": ITEMS[:2], "x": [1.0, 2.0]}), path)
    with raises(path, "expected exactly one list column of vectors, found 0"):
        read_imported_factors(tmp_path, ITEMS, USERS)


def test_parquet_non_numeric_vectors(tmp_path):
    path = tmp_path / "item_factors.parquet"
    pq.write_table(pa.table({"item_id": ITEMS[:2], "v": pa.array([["a"], ["b"]])}), path)
    with raises(path, "holds string values, which are not numeric"):
        read_imported_factors(tmp_path, ITEMS, USERS)


def test_parquet_empty(tmp_path):
    path = write_parquet(tmp_path / "item_factors.parquet", [], np.ones((0, K)))
    with raises(path, "empty (0 rows)"):
        read_imported_factors(path, ITEMS, USERS)


def test_parquet_file_that_is_not_parquet(tmp_path):
    path = tmp_path / "item_factors.parquet"
    path.write_text("id,vector\n")
    with raises(path, "not a readable Parquet file"):
        read_imported_factors(tmp_path, ITEMS, USERS)
