"""Every model of a build fitted on one interaction matrix, as FactorModels (models.fit.factor_model).

The paper's closed forms (from the truncated SVD), the same closed forms on each pre-learning transform
of X (models.fit.preprocess: `<transform>-<model>`), ALS and BPR trained with implicit, the model trained
against cosine (models.fit.cosine_mf), and imported factors. The build serves the models fitted on all the
data; the evaluation calls the same function on its training part, so both see the same models with the
same parameters. Models are yielded one at a time: the caller writes a model's indexes before the next is
fitted.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from models.artifact.manifest import DENOISING_GROUP
from models.build.progress import Progress
from models.errors import InputError
from models.fit.closed_forms import DENOISING_VARIANTS, MODELS, WEIGHT_DECAY, denoising_factors, weight_decay_factors
from models.fit.cosine_mf import CosineMFParams, fit_cosine_mf, validate_params
from models.fit.factor_model import FactorModel
from models.fit.implicit_models import ALGORITHMS, ImplicitParams, train_implicit
from models.fit.preprocess import TRANSFORMS, PreprocessParams, transform
from models.fit.svd import TruncatedSVD
from models.inputs.factors import ImportedFactors, users_from_items

COSINE_MF = "cosine-mf"
TRAINED: tuple[str, ...] = (*ALGORITHMS, COSINE_MF)  # what --train accepts
RESERVED_NAMES: tuple[str, ...] = (*MODELS, *(f"{t}-{m}" for t in TRANSFORMS for m in MODELS), *TRAINED)
# What P = X_t A means for each transform's models (docs/offline-job.md, "Normalising before learning")
TRANSFORM_USERS = {
    "ips": "P = X_w A, X_w = c X diag(pop^-beta) (a user is the sum of the reweighted A-rows of its items)",
    "standardized": "P = X_s A, X_s = c (X - 1 mu^T) diag(1/sigma) (every user's row standardised per item first)",
}


@dataclass(frozen=True)
class ModelChoice:
    """Which models besides the closed forms: implicit algorithms to train, factor sets to import (name, path)."""

    train: tuple[str, ...] = ()
    implicit: ImplicitParams = field(default_factory=ImplicitParams)
    imports: tuple[tuple[str, str], ...] = ()  # (model name, path)
    preprocess: PreprocessParams = field(default_factory=PreprocessParams)
    cosine_mf: CosineMFParams = field(default_factory=CosineMFParams)

    def validate(self) -> None:
        """InputError naming the flag: unknown algorithms, repeated or reserved model names, bad hyper-parameters."""
        unknown = [a for a in self.train if a not in TRAINED]
        if unknown:
            raise InputError(
                f"--train: unknown algorithm(s) {', '.join(unknown)}; expected a comma-separated subset of {','.join(TRAINED)}"
            )
        if len(set(self.train)) != len(self.train):
            raise InputError(f"--train: an algorithm is named twice in {','.join(self.train)}")
        names = [name for name, _ in self.imports]
        for name in names:
            if name in RESERVED_NAMES:
                raise InputError(
                    f"--import-factors {name}=...: {name!r} is the name of a built-in model ({', '.join(RESERVED_NAMES)})"
                )
            if names.count(name) > 1:
                raise InputError(f"--import-factors: the model name {name!r} is given twice")
        p = self.implicit
        if p.factors is not None and p.factors < 1:
            raise InputError(f"--train-factors must be >= 1, got {p.factors}")
        for flag, value in (
            ("--als-regularization", p.als_regularization),
            ("--bpr-regularization", p.bpr_regularization),
            ("--als-alpha", p.als_alpha),
        ):
            if not np.isfinite(value) or value < 0:
                raise InputError(f"{flag} must be a finite number >= 0, got {value}")
        if not np.isfinite(p.bpr_learning_rate) or p.bpr_learning_rate <= 0:
            raise InputError(f"--bpr-learning-rate must be a finite number > 0, got {p.bpr_learning_rate}")
        if p.als_iterations < 1 or p.bpr_iterations < 1:
            raise InputError("--als-iterations and --bpr-iterations must be >= 1")
        self.preprocess.validate()
        validate_params(self.cosine_mf)


def fit_models(
    X: sp.csr_matrix,
    svd: TruncatedSVD,
    lambda_denoising: float,
    lambda_weight_decay: float,
    choice: ModelChoice,
    imported: Mapping[str, ImportedFactors],
    seed: int,
    progress: Progress,
    svd_options: Mapping[str, int] | None = None,
) -> Iterator[FactorModel]:
    """The closed forms of `svd` (of X), the closed forms of each transform of X, then the trained models, then
    the imported factors.

    Closed forms: P = X A, Q = B (PAPER.md); on a transform X_t (its own truncated SVD at svd.k, with
    svd_options n_iter / n_oversamples): P = X_t A. Implicit: its user and item factors. cosine-mf:
    P = gamma Omega(X A), Q = Omega(B), started from svd.V. Imported: their factors; without user factors
    P = X Q (a user is the sum of the item vectors it consumed).
    """
    # (n_users, k): one sparse product shared by every closed form (see _user_embeddings); for X in row blocks on
    # Dask workers a persisted dask array, so every closed form's P stays there too
    XV = X @ svd.V
    yield from _closed_forms(X, XV, svd, lambda_denoising, lambda_weight_decay, progress)
    del XV
    options = dict(svd_options or {})
    for name in choice.preprocess.transforms:
        with progress.step(f"svd of the {name} transform, k={svd.k}"):
            Xt = transform(X, name, choice.preprocess)
            # standardising flattens the spectrum (no popularity skew): twice the power iterations keep its
            # residual at the raw SVD's (docs/offline-job.md)
            n_iter = options.get("n_iter", 6) * (2 if name == "standardized" else 1)
            svd_t = Xt.svd(svd.k, seed=seed, n_iter=n_iter, n_oversamples=options.get("n_oversamples", 20))
        progress.say(f"{name}: {svd_t.method}, relative residual {svd_t.relative_residual:.2e}")
        extra = {
            "preprocess": Xt.info,
            "svd": {
                "method": svd_t.method,
                "relative_residual": svd_t.relative_residual,
                "energy_captured": svd_t.energy_captured,
            },
            "users": TRANSFORM_USERS[name],
        }
        yield from _closed_forms(Xt, Xt.times(svd_t.V), svd_t, lambda_denoising, lambda_weight_decay, progress, name, extra)
        del Xt
    factors = choice.implicit.factors or svd.k
    for algorithm in choice.train:
        if algorithm == COSINE_MF:
            with progress.step(f"model {COSINE_MF} (L-BFGS, k={svd.k}, at most {choice.cosine_mf.max_iterations} iterations)"):
                P, Q, info = fit_cosine_mf(X, svd.V, choice.cosine_mf, seed)
            progress.say(f"{COSINE_MF}: loss {info['relative_loss']:.4f} of ||X||^2 after {info['iterations']} iterations")
            yield FactorModel(name=COSINE_MF, P=P, Q=Q, source="trained", info=info, projected_group=COSINE_MF)
            continue
        with progress.step(f"model {algorithm} (implicit, {factors} factors)"):
            P, Q, info = train_implicit(X, algorithm, factors, choice.implicit, seed)
        yield FactorModel(
            name=algorithm, P=P, Q=Q, source="implicit", info=info | {"users": "user factors"}, projected_group=algorithm
        )
    for name, factors_in in imported.items():
        with progress.step(f"model {name} (imported)"):
            derived = factors_in.P is None
            P = users_from_items(X, factors_in.Q) if factors_in.P is None else factors_in.P
        yield FactorModel(
            name=name,
            P=P,
            Q=factors_in.Q,
            source="imported",
            info=factors_in.info | {"users": "P = X Q (no user factors imported)" if derived else "user factors"},
            projected_group=name,
        )


def _closed_forms(
    X: Any,
    XV: np.ndarray,
    svd: TruncatedSVD,
    lambda_denoising: float,
    lambda_weight_decay: float,
    progress: Progress,
    prefix: str = "",
    extra: Mapping[str, Any] | None = None,
) -> Iterator[FactorModel]:
    """The five closed forms of `svd` (of X, sparse or a transform with .times), named `<prefix>-<model>` with a prefix;
    XV = X V (n_users, k)."""
    for model in MODELS:
        name = f"{prefix}-{model}" if prefix else model
        with progress.step(f"model {name}"):
            if model == WEIGHT_DECAY:
                A, B, surviving = weight_decay_factors(svd.V, svd.s, lambda_weight_decay)
            else:
                A, B = denoising_factors(svd.V, svd.s, lambda_denoising, model)
                surviving = int(np.count_nonzero(np.linalg.norm(A, axis=0) * np.linalg.norm(B, axis=0) > 0))
            info = {
                "source": "closed-form",
                "objective": "weight-decay" if model == WEIGHT_DECAY else "denoising",
                "d_variant": None if model == WEIGHT_DECAY else model.removeprefix("denoising-"),
                "lambda": lambda_weight_decay if model == WEIGHT_DECAY else lambda_denoising,
                "surviving_dims": surviving,
                "users": "P = X A",
                **(extra or {}),
            }
            group = DENOISING_GROUP if model in DENOISING_VARIANTS else model
            P = _user_embeddings(X, XV, svd.V, A)
        yield FactorModel(
            name=name, P=P, Q=B, source="closed-form", info=info, projected_group=f"{prefix}-{group}" if prefix else group
        )


def _user_embeddings(X: Any, XV: np.ndarray, V: np.ndarray, A: np.ndarray) -> np.ndarray:
    """P = X A (n_users, k) from XV = X V (n_users, k), V and A (n_items, k); X sparse or a transform (.times).

    Every closed form has A = V diag(a), so X A = (X V) diag(a): a column scaling instead of a
    sparse product per model. a is recovered column by column (a_j = <A_j, V_j> / <V_j, V_j>) and
    checked; an A of any other form gets the product.
    """
    vv = np.einsum("ij,ij->j", V, V)
    a = np.einsum("ij,ij->j", A, V) / np.where(vv > 0, vv, 1.0)
    if np.allclose(A, V * a, rtol=1e-12, atol=0.0):
        return XV * a
    return X.times(A) if hasattr(X, "times") else X @ A
