"""CLI of the offline job: `python -m models.build --dataset simulation --out artifacts`.

Reads the input, fits every model, writes every index into a staging folder and publishes it
atomically. Any bad input or parameter: a message naming it, exit code 2, nothing published.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import json
import os
import resource
import shutil
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.artifact.manifest import METRICS, index_entries, milvus_entries, recommend_entries
from models.artifact.store import ArtifactStore, Digests, local_digests
from models.build.allocator import keep_freed_memory
from models.build.fitting import COSINE_MF, TRAINED, ModelChoice
from models.build.pipeline import BuildParams, build_into
from models.build.progress import Progress
from models.diagnostics.gauge import GaugeParams
from models.diagnostics.report import format_summary
from models.diagnostics.summary import DiagnosticsParams
from models.distributed import DEFAULT_BLOCK_NNZ
from models.errors import InputError
from models.evaluation.report import format_evaluation, format_metric_grid
from models.evaluation.scoring import EvalParams
from models.fit.cosine_mf import CosineMFParams
from models.fit.implicit_models import ALGORITHMS, ImplicitParams
from models.fit.preprocess import TRANSFORMS, PreprocessParams
from models.indexes import milvus_collections
from models.indexes.faiss_index import HnswParams
from models.indexes.ivf import IvfParams
from models.inputs.csv_file import read_interactions_csv
from models.inputs.dataset import Dataset
from models.inputs.factors import parse_import_spec
from models.inputs.goodbooks import read_goodbooks
from models.inputs.item_metadata import read_item_metadata, with_item_metadata
from models.inputs.parquet_files import read_interactions_parquet
from models.inputs.simulation import SimulationSpec, simulate

ENGINES = ("in-process", "dask")
if TYPE_CHECKING:
    from dask.distributed import Client

DEFAULT_GOODBOOKS = Path(__file__).resolve().parents[3] / "shared" / "data" / "goodbooks"


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m models.build", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--dataset", choices=("simulation", "csv", "parquet", "goodbooks"), default="simulation")
    ap.add_argument(
        "--input",
        help="csv: the interaction file; parquet: a file or a directory of *.parquet files; "
        "goodbooks: the folder (default ../shared/data/goodbooks)",
    )
    ap.add_argument("--out", required=True, help="artifacts root (versions/, CURRENT)")
    ap.add_argument("--k", type=int, default=50, help="embedding dimension (capped at min(n_users, n_items))")
    ap.add_argument("--lambda-denoising", type=float, default=10_000.0, help="objective 1's lambda")
    ap.add_argument("--lambda-weight-decay", type=float, default=100.0, help="objective 2's lambda")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--user-col", default="user_id")
    ap.add_argument("--item-col", default="item_id")
    ap.add_argument("--value-col", default="value", help="optional value column (default 'value' if present)")
    ap.add_argument(
        "--movielens", action="store_true", help="shorthand for --user-col userId --item-col movieId --value-col rating"
    )
    ap.add_argument("--min-value", type=float, default=None, help="drop rows whose value is below this")
    ap.add_argument(
        "--binarize",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="set kept values to 1 (default: on for goodbooks, off for csv and parquet)",
    )
    ap.add_argument(
        "--duplicates",
        choices=("sum", "max", "error"),
        default="sum",
        help="repeated (user, item) rows: sum their values (default), keep the max, or reject",
    )
    ap.add_argument("--sim-users", type=int, default=20_000)
    ap.add_argument("--sim-items", type=int, default=1_000)
    ap.add_argument("--sim-clusters", type=int, default=5)
    ap.add_argument("--svd-n-iter", type=int, default=6)
    ap.add_argument("--svd-oversamples", type=int, default=20)
    ap.add_argument("--hnsw", action="store_true", help="also build HNSW indexes and record their recall@10")
    ap.add_argument("--hnsw-m", type=int, default=32)
    ap.add_argument("--hnsw-ef-construction", type=int, default=200)
    ap.add_argument("--hnsw-ef-search", type=int, default=128)
    serving = ap.add_argument_group('serving structures (manifest: each index\'s "serving" says which and why)')
    serving.add_argument(
        "--exact-max-rows",
        type=int,
        default=IvfParams.exact_max_rows,
        metavar="N",
        help="indexes of at most N rows are searched exactly; larger ones get an IVF twin when its measured "
        "recall@10 reaches --approximate-recall",
    )
    serving.add_argument(
        "--approximate-recall",
        type=float,
        default=IvfParams.target_recall,
        metavar="R",
        help="recall@10 against exact search (less two standard errors of its sample) an IVF twin must reach",
    )
    serving.add_argument("--exact-only", action="store_true", help="no approximate twins: every search is exact")
    ap.add_argument(
        "--precompute-neighbours",
        type=_neighbours_arg,
        default=AUTO_NEIGHBOURS,
        metavar="N|auto",
        help="store every item index's exact top-N neighbour lists (served for /similar-items with k <= N; 0: none); "
        f"auto: top {AUTO_NEIGHBOURS_N} of the item indexes of at most --exact-max-rows rows (the larger ones get "
        "an IVF twin)",
    )
    ap.add_argument(
        "--no-diagnostics",
        dest="diagnostics",
        action="store_false",
        help="skip summary.json (metric agreement over the catalogue) and the simulation's heatmaps",
    )
    ap.add_argument(
        "--diagnostics-sample",
        type=int,
        default=2000,
        help="item queries for summary.json (all items when fewer; a seeded sample otherwise)",
    )
    ap.add_argument(
        "--diagnostics-user-sample", type=int, default=500, help="user queries for summary.json (seeded sample; 0: items only)"
    )
    ap.add_argument(
        "--diagnostics-score-budget",
        type=int,
        default=DiagnosticsParams.score_budget,
        metavar="N",
        help="summary.json: at most N // rows query rows per side (each list scores every row), never fewer than 100",
    )
    models = ap.add_argument_group("models besides the paper's closed forms (docs/offline-job.md)")
    models.add_argument(
        "--train",
        default="",
        metavar="ALGOS",
        help=f"train and serve under these names: comma-separated subset of {','.join(TRAINED)} ({','.join(ALGORITHMS)} "
        f"with implicit; {COSINE_MF}: embeddings normalised inside the objective, scipy's L-BFGS)",
    )
    models.add_argument(
        "--preprocess",
        default="",
        metavar="LIST",
        help=f"also fit the closed forms on transformed matrices, served as <transform>-<model>: comma-separated subset of "
        f"{','.join(TRANSFORMS)} (ips: items reweighted by popularity^-beta; standardized: every column to mean 0, variance 1)",
    )
    models.add_argument(
        "--ips-beta", type=float, default=PreprocessParams.ips_beta, help="ips exponent: X diag(pop^-beta) (0.5..1 common)"
    )
    models.add_argument(
        "--cosine-mf-iterations", type=int, default=CosineMFParams.max_iterations, help=f"{COSINE_MF}: L-BFGS iteration cap"
    )
    models.add_argument(
        "--cosine-mf-tolerance",
        type=float,
        default=CosineMFParams.tolerance,
        help=f"{COSINE_MF}: stop when an iteration lowers the loss by less than this fraction",
    )
    models.add_argument("--train-factors", type=int, default=None, help="factors of the implicit models (default: --k)")
    models.add_argument("--als-regularization", type=float, default=ImplicitParams.als_regularization)
    models.add_argument("--als-alpha", type=float, default=ImplicitParams.als_alpha, help="confidence 1 + alpha * value")
    models.add_argument("--als-iterations", type=int, default=ImplicitParams.als_iterations)
    models.add_argument("--bpr-learning-rate", type=float, default=ImplicitParams.bpr_learning_rate)
    models.add_argument("--bpr-regularization", type=float, default=ImplicitParams.bpr_regularization)
    models.add_argument("--bpr-iterations", type=int, default=ImplicitParams.bpr_iterations)
    models.add_argument(
        "--import-factors",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="serve factors trained elsewhere as model NAME (repeatable): a folder with item_factors.npy + item_ids.txt "
        "[+ user_factors.npy + user_ids.txt], implicit's saved .npz with both id files, or Parquet (docs/offline-job.md)",
    )
    ap.add_argument(
        "--items",
        metavar="FILE",
        help="item metadata CSV: item_id,title[,categories] (categories |-separated); with --movielens, movies.csv",
    )
    evaluation = ap.add_argument_group("held-out evaluation (evaluation.json; never changes what is served)")
    evaluation.add_argument("--evaluate", action="store_true", help="refit every model on a per-user split and rank them")
    evaluation.add_argument(
        "--eval-fraction", type=float, default=EvalParams.fraction, help="share of each user's interactions held out"
    )
    evaluation.add_argument(
        "--eval-min-interactions", type=int, default=EvalParams.min_interactions, help="users with fewer keep all in training"
    )
    evaluation.add_argument(
        "--eval-users",
        type=int,
        default=EvalParams.max_users,
        metavar="N",
        help="rank a seeded sample of N held-out users (0: all; default %(default)s)",
    )
    evaluation.add_argument(
        "--eval-items",
        type=int,
        default=EvalParams.max_items,
        metavar="N",
        help="item -> item measures over a seeded sample of N query items (0: all; default %(default)s)",
    )
    gauge = ap.add_argument_group("gauge probe (gauge.json: how far each metric's lists move under P D, Q D^-1)")
    gauge.add_argument(
        "--gauge-transforms", type=int, default=GaugeParams.transforms, help="random diagonal D per model (0: no probe)"
    )
    gauge.add_argument(
        "--gauge-shared-transforms",
        type=int,
        default=GaugeParams.shared_transforms,
        help="of those, how many the shared metrics (projected, projected-centered, whitened: invariant by "
        "construction) are checked under",
    )
    gauge.add_argument("--gauge-queries", type=int, default=GaugeParams.item_queries, help="query items (seeded sample)")
    gauge.add_argument(
        "--gauge-score-budget",
        type=int,
        default=GaugeParams.score_budget,
        metavar="N",
        help="at most N // rows query rows per side (each list scores every row), never fewer than 100",
    )
    gauge.add_argument("--gauge-user-queries", type=int, default=GaugeParams.user_queries, help="query users (seeded sample)")
    engine = ap.add_argument_group("engine (docs/scale-out.md)")
    engine.add_argument(
        "--engine",
        choices=ENGINES,
        default="in-process",
        help="in-process: X in this process (the default); dask: X as row blocks on Dask workers, the SVD and the "
        "user embeddings computed there (--dataset parquet; the closed forms only)",
    )
    engine.add_argument(
        "--dask-scheduler",
        metavar="tcp://HOST:PORT",
        help="an existing Dask cluster (default: a LocalCluster of worker processes)",
    )
    engine.add_argument("--dask-workers", type=int, default=2, help="worker processes of the LocalCluster")
    engine.add_argument(
        "--dask-block-nnz",
        type=int,
        default=DEFAULT_BLOCK_NNZ,
        metavar="N",
        help="interactions per row block of X (at least one block per worker thread, and no more blocks than make "
        "their dense n_items x (k + oversamples) partials of X^T Q as large as X)",
    )
    milvus = ap.add_argument_group("Milvus (docs/scale-out.md): the API's VECTOR_BACKEND=milvus serves these collections")
    milvus.add_argument(
        "--milvus-uri",
        metavar="URI",
        help="also load every index into Milvus (a collection per version and index, verified, aliases switched after "
        "CURRENT); http://HOST:19530, the server the API's MILVUS_URI names",
    )
    ap.add_argument("--keep", type=int, default=3, help="versions to keep (the live one always stays)")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    return ap


def load_dataset(args: argparse.Namespace, client: Client | None = None, progress: Progress | None = None) -> Dataset:
    """The interactions the arguments name; with a Dask client, as row blocks on its workers (BlockedDataset)."""
    if client is not None:
        from models.distributed.parquet_blocks import read_parquet_blocks

        cols = ("userId", "movieId", "rating") if args.movielens else (args.user_col, args.item_col, args.value_col)
        return read_parquet_blocks(
            args.input,
            client,
            user_col=cols[0],
            item_col=cols[1],
            value_col=cols[2],
            min_value=args.min_value,
            binarize=bool(args.binarize),
            duplicates=args.duplicates,
            block_nnz=args.dask_block_nnz,
            progress=progress,
            partial_width=args.k + args.svd_oversamples,
        )
    if args.dataset == "simulation":
        spec = SimulationSpec(n_users=args.sim_users, n_items=args.sim_items, n_clusters=args.sim_clusters, seed=args.seed)
        ds, _ = simulate(spec)
        return ds
    if args.dataset == "goodbooks":
        return read_goodbooks(
            args.input or DEFAULT_GOODBOOKS,
            min_value=args.min_value,
            binarize=True if args.binarize is None else args.binarize,
            duplicates=args.duplicates,
        )
    if not args.input:
        raise InputError(f"--input is required with --dataset {args.dataset}")
    cols = ("userId", "movieId", "rating") if args.movielens else (args.user_col, args.item_col, args.value_col)
    read = read_interactions_parquet if args.dataset == "parquet" else read_interactions_csv
    return read(
        args.input,
        user_col=cols[0],
        item_col=cols[1],
        value_col=cols[2],
        min_value=args.min_value,
        binarize=bool(args.binarize),
        duplicates=args.duplicates,
    )


AUTO_NEIGHBOURS, AUTO_NEIGHBOURS_N = "auto", 100


def _neighbours_arg(value: str) -> int | str:
    """--precompute-neighbours: "auto" or an integer (its range is checked with the other parameters)."""
    if value == AUTO_NEIGHBOURS:
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0 or 'auto', got {value!r}") from None


def build_params(args: argparse.Namespace) -> BuildParams:
    """The BuildParams of parsed command-line arguments (not yet validated): what the CLI's defaults mean."""
    return BuildParams(
        k=args.k,
        lambda_denoising=args.lambda_denoising,
        lambda_weight_decay=args.lambda_weight_decay,
        seed=args.seed,
        svd_n_iter=args.svd_n_iter,
        svd_oversamples=args.svd_oversamples,
        hnsw=args.hnsw,
        hnsw_params=HnswParams(M=args.hnsw_m, ef_construction=args.hnsw_ef_construction, ef_search=args.hnsw_ef_search),
        diagnostics=args.diagnostics,
        diagnostics_sample=args.diagnostics_sample,
        diagnostics_user_sample=args.diagnostics_user_sample,
        diagnostics_score_budget=args.diagnostics_score_budget,
        precompute_neighbours=AUTO_NEIGHBOURS_N if args.precompute_neighbours == AUTO_NEIGHBOURS else args.precompute_neighbours,
        neighbours_max_rows=args.exact_max_rows if args.precompute_neighbours == AUTO_NEIGHBOURS else None,
        approximate=None
        if args.exact_only
        else IvfParams(exact_max_rows=args.exact_max_rows, target_recall=args.approximate_recall),
        models=ModelChoice(
            train=tuple(a.strip() for a in args.train.split(",") if a.strip()),
            implicit=ImplicitParams(
                factors=args.train_factors,
                als_regularization=args.als_regularization,
                als_alpha=args.als_alpha,
                als_iterations=args.als_iterations,
                bpr_learning_rate=args.bpr_learning_rate,
                bpr_regularization=args.bpr_regularization,
                bpr_iterations=args.bpr_iterations,
            ),
            imports=tuple((name, str(path)) for name, path in map(parse_import_spec, args.import_factors)),
            preprocess=PreprocessParams(
                transforms=tuple(t.strip() for t in args.preprocess.split(",") if t.strip()), ips_beta=args.ips_beta
            ),
            cosine_mf=replace(CosineMFParams(), max_iterations=args.cosine_mf_iterations, tolerance=args.cosine_mf_tolerance),
        ),
        gauge=GaugeParams(
            transforms=args.gauge_transforms,
            item_queries=args.gauge_queries,
            user_queries=args.gauge_user_queries,
            shared_transforms=args.gauge_shared_transforms,
            score_budget=args.gauge_score_budget,
            seed=args.seed,
        ),
        evaluate=args.evaluate,
        evaluation=EvalParams(
            fraction=args.eval_fraction,
            min_interactions=args.eval_min_interactions,
            seed=args.seed,
            max_users=args.eval_users or None,
            max_items=args.eval_items or None,
        ),
    )


def run(args: argparse.Namespace, progress: Progress) -> tuple[str, dict[str, Any]]:
    """Validate, load, fit, stage and publish; returns (version, manifest)."""
    if args.keep < 1:
        raise InputError(f"--keep must be >= 1, got {args.keep}")
    params = build_params(args)
    params.validate()  # before reading anything: a bad parameter should not cost a pass over the data
    check_engine(args)
    keep_freed_memory()
    store = ArtifactStore(args.out)
    try:
        store.root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"--out {args.out}: cannot create: {e.strerror or e}") from e
    if not os.access(store.root, os.W_OK):
        raise InputError(f"--out {args.out}: not writable")
    with open(store.lock_file, "w") as lock, _engine_client(args, progress) as client:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build publishes at a time
        removed = store.cleanup_leftovers()
        if removed:
            progress.say(f"removed leftovers of interrupted builds: {', '.join(removed)}")
        with progress.step(f"reading {args.dataset}{' ' + str(args.input) if args.input else ''}"):
            ds = load_dataset(args, client, progress)
            if args.items:
                if args.dataset not in ("csv", "parquet"):
                    raise InputError(f"--items is for --dataset csv or parquet; {args.dataset} brings its own item metadata")
                meta = read_item_metadata(args.items, ds.item_ids, movielens=args.movielens)
                if meta.info["matched"] == 0:
                    raise InputError(
                        f"--items {args.items}: none of its {meta.info['rows']} ids is an item of the interaction data"
                    )
                ds = with_item_metadata(ds, meta)
                progress.say(
                    f"items: metadata for {meta.info['matched']} of {ds.n_items} items "
                    f"({meta.info['ignored_unknown']} ids of the file not in the interactions, ignored)"
                )
        progress.say(f"dataset: {ds.n_users} users x {ds.n_items} items, {ds.X.nnz} interactions")
        version = store.new_version(ds.fingerprint(), vars(args))
        with store.staging(version) as staging:
            try:
                manifest = build_into(staging, ds, params, progress)
                milvus = _load_into_milvus(args, staging, version, manifest, progress, client) if args.milvus_uri else None
                before = set(store.list_versions())
                with progress.step("publishing"):
                    try:
                        store.publish(staging, version, manifest, keep=args.keep, digests=_digests(client))
                    except BaseException:
                        if milvus is not None:
                            milvus_collections.drop_versions(milvus, [version])
                        raise
            except OSError as e:
                # Described now, while the staging folder still fills the disk (it is removed on the way out).
                raise WriteFailed(describe_os_error(e, staging, progress.failed_step)) from e
        if milvus is not None:
            with progress.step("milvus: switching the aliases to the new version, dropping versions not kept"):
                try:
                    milvus_collections.switch_aliases(milvus, milvus_entries(manifest))
                    dropped = milvus_collections.drop_versions(milvus, before - set(store.list_versions()))
                except Exception as e:
                    raise milvus_collections.AliasesNotSwitched(
                        f"milvus: {version} is published (CURRENT switched, the API serves it) but its aliases were not "
                        f"switched: {type(e).__name__}: {e}; run the build again or alter the aliases by hand"
                    ) from e
            progress.say(f"milvus: aliases switched; {len(dropped)} collections of versions not kept dropped")
    return version, manifest


def _load_into_milvus(
    args: argparse.Namespace, staging: Path, version: str, manifest: dict[str, Any], progress: Progress, engine: Client | None
) -> Any:
    """Every index of the staged version loaded into Milvus and verified (rows moved by the Dask workers with the
    Dask engine, models.distributed.milvus_rows); manifest["milvus"] set. The client."""
    params = milvus_collections.MilvusParams(
        uri=args.milvus_uri, exact_max_rows=args.exact_max_rows, target_recall=args.approximate_recall, seed=args.seed
    )
    with progress.step(f"milvus: loading every index into {args.milvus_uri}"):
        client = milvus_collections.connect(args.milvus_uri)
        files = [e.file for e in index_entries(manifest).values()] + [r.items.file for r in recommend_entries(manifest).values()]
        rows = None
        if engine is not None:
            from models.distributed.milvus_rows import WorkerRows

            rows = WorkerRows(engine, args.milvus_uri)
        entries = milvus_collections.load_version(client, staging, version, files, params, progress.say, rows)
    manifest["milvus"] = {file: e.to_json() for file, e in entries.items()}
    return client


# What the Dask engine does not run: each needs X in this process (a refit on a split, a transform of X, a trainer).
_NOT_WITH_DASK = {
    "--preprocess": "each transform of X is fitted in this process",
    "--train": "implicit and cosine-mf train on X in this process",
    "--import-factors": "imported factors without user factors need X in this process",
    "--evaluate": "the evaluation refits every model on a split of X in this process",
}


def check_engine(args: argparse.Namespace) -> None:
    """InputError naming the flag that --engine dask cannot honour (or a --dask-* flag without it)."""
    if args.engine != "dask":
        used = [f for f, v in (("--dask-scheduler", args.dask_scheduler), ("--dask-workers", args.dask_workers != 2)) if v]
        if used:
            raise InputError(f"{', '.join(used)}: only with --engine dask")
        return
    if args.dataset != "parquet":
        raise InputError(f"--engine dask reads --dataset parquet (a file or a directory of files), not {args.dataset}")
    if args.dask_block_nnz < 1:
        raise InputError(f"--dask-block-nnz must be >= 1, got {args.dask_block_nnz}")
    given = {
        "--preprocess": args.preprocess,
        "--train": args.train,
        "--import-factors": args.import_factors,
        "--evaluate": args.evaluate,
    }
    for flag, value in given.items():
        if value:
            raise InputError(f"{flag} is not available with --engine dask: {_NOT_WITH_DASK[flag]}; use --engine in-process")


def _digests(client: Client | None) -> Digests:
    """The publish step's checksums: on the Dask workers with --engine dask, else in this process."""
    if client is None:
        return local_digests
    from models.distributed.file_digests import worker_digests

    return worker_digests(client)


@contextlib.contextmanager
def _engine_client(args: argparse.Namespace, progress: Progress) -> Iterator[Client | None]:
    """The Dask client of --engine dask (models.distributed.cluster), None in-process."""
    if args.engine != "dask":
        yield None
        return
    from models.distributed.cluster import dask_client

    with dask_client(args.dask_scheduler, args.dask_workers, progress) as client:
        yield client


class WriteFailed(Exception):
    """Writing the new version failed (a full disk, a file-size limit, permissions); the message says where and why."""


def describe_os_error(e: OSError, staging: Path, step: str | None) -> str:
    """ "step S: writing FILE: No space left on device (errno ENOSPC: the file system of ... is full, N MB free)".

    numpy's writes raise an OSError without errno or file name ("N requested and M written"); the free
    space of the staging folder's file system tells a full disk from other failures then.
    """
    where = f"step {step!r}: " if step else ""
    if e.filename:
        what = f"writing {e.filename}: "
    else:  # Python's and numpy's writes name no file: the one being written is the newest of the folder
        newest = max((p for p in staging.rglob("*") if p.is_file()), key=lambda p: p.stat().st_mtime_ns, default=None)
        what = f"writing {newest} (the newest file of the staging folder): " if newest else f"writing into {staging}: "
    try:
        free = shutil.disk_usage(staging).free
    except OSError:
        free = None
    name = errno.errorcode.get(e.errno or 0)
    meaning = {
        errno.ENOSPC: "the file system is full",
        errno.EDQUOT: "the disk quota is exhausted",
        errno.EFBIG: "the file is larger than this process may write (RLIMIT_FSIZE)",
    }.get(e.errno or 0)
    if meaning is None and free is not None and free < 16 << 20:
        meaning = "the file system is full"
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if meaning is None and limit != resource.RLIM_INFINITY:
        meaning = f"this process may write files of at most {limit} bytes (RLIMIT_FSIZE)"
    details = [x for x in (f"errno {name}" if name else None, meaning) if x]
    if free is not None:
        details.append(f"{free / 1e6:.1f} MB free on the file system of {staging.parent}")
    return f"{where}{what}{e.strerror or e} ({'; '.join(details)})"


def summary(version: str, manifest: dict[str, Any], out: str) -> str:
    c, svd = manifest["counts"], manifest["svd"]
    s = svd["singular_values"]
    lines = [
        f"published {version} to {out} (CURRENT switched)",
        f"  dataset     {manifest['dataset']['kind']}: {c['users']} users x {c['items']} items, {c['interactions']} interactions",
        f"  svd         k={c['k']} {svd['method']}; s_1={s[0]:.4g} s_k={s[-1]:.4g}; "
        f"residual {svd['relative_residual']:.2e}; energy {svd['energy_captured']:.3f}",
    ]
    for name, m in manifest["models"].items():
        how = (
            f"lambda={m['lambda']:<10g} dims={m['surviving_dims']:<5d}"
            if m.get("source", "closed-form") == "closed-form"
            else f"{m.get('algorithm', m.get('format', '')) + ' ' + m['source']:<16s} k={m.get('k', '')!s:<5s}"
        )
        lines.append(f"  {name:28s} {how} zero users={m['zero_users']:<6d} zero items={m['zero_items']}")
    files = {e["file"] for e in manifest["indexes"].values()}
    recalls = [e["hnsw"]["recall_at_10"] for e in manifest["indexes"].values() if "hnsw" in e]
    lines.append(
        f"  indexes     {len(manifest['indexes'])} (side x model x metric) in {len(files)} files"
        + (f"; hnsw recall@10 min {min(recalls):.3f}" if recalls else "")
    )
    lines.append(f"  build       {manifest['build_seconds']:.1f}s")
    vdir = Path(out) / "versions" / version
    if manifest.get("gauge"):
        probes = json.loads((vdir / manifest["gauge"]).read_text(encoding="utf-8"))
        lines.append(
            f"  gauge       {vdir / manifest['gauge']}: mean Jaccard@10 of the lists under random P D, Q D^-1 (1 = invariant)"
        )
        widths = [max(7, len(metric)) for metric in METRICS]
        lines.append(f"  {'model':32s} {'side':6s} " + " ".join(f"{m:>{w}s}" for m, w in zip(METRICS, widths, strict=True)))
        for name, probe in probes.items():
            for side, by_metric in probe["sides"].items():
                cells = [by_metric.get(metric, {}).get("jaccard_mean") for metric in METRICS]
                shown = [f"{'n/a' if v is None else f'{v:.3f}':>{w}s}" for v, w in zip(cells, widths, strict=True)]
                lines.append(f"  {name:32s} {side:6s} " + " ".join(shown))
    if manifest.get("evaluation"):
        doc = json.loads((vdir / manifest["evaluation"]).read_text(encoding="utf-8"))
        lines.append(f"  evaluation  {vdir / manifest['evaluation']} ({doc['seconds']:.1f}s)")
        lines.append(format_evaluation(doc))
        if doc.get("has_truth"):
            lines.append("\n  the paper's Figure 1 as numbers (Spearman with the true item similarities / cluster precision@10):")
            lines.append(format_metric_grid(doc))
    diag = manifest.get("diagnostics")
    if diag:
        figures = diag["heatmaps"]
        lines.append(
            f"  heatmaps    {vdir / figures['grid']} (+{len(figures['panels'])} panels)"
            if figures
            else f"  heatmaps    none: {diag['heatmaps_skipped']}"
        )
        lines.append(f"  diagnostics {vdir / diag['summary']}")
        summary_json = json.loads((vdir / diag["summary"]).read_text(encoding="utf-8"))
        lines.append(format_summary(summary_json))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    progress = Progress(quiet=args.quiet)
    try:
        version, manifest = run(args, progress)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        print("nothing was published; the previous version is untouched", file=sys.stderr)
        return 2
    except milvus_collections.MilvusFailed as e:
        print(f"error: {e}", file=sys.stderr)
        if not isinstance(e, milvus_collections.AliasesNotSwitched):
            print("nothing was published (its collections are dropped); the previous version is untouched", file=sys.stderr)
        return 1
    except WriteFailed as e:  # the machine, not the input: a full disk, a file-size limit, a permission
        print(f"error: {e}", file=sys.stderr)
        print("nothing was published (the staging folder is removed); the previous version is untouched", file=sys.stderr)
        return 1
    print(summary(version, manifest, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
