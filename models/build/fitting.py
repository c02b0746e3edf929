"""Every model of a build fitted on one interaction matrix, as FactorModels (models.fit.factor_model).

The paper's closed forms (from the truncated SVD), ALS and BPR trained with implicit, and imported
factors. The build serves the models fitted on all the data; the evaluation calls the same function
on its training part, so both see the same models with the same parameters. Models are yielded one
at a time: the caller writes a model's indexes before the next is fitted.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from models.artifact.manifest import DENOISING_GROUP
from models.build.progress import Progress
from models.errors import InputError
from models.fit.closed_forms import DENOISING_VARIANTS, MODELS, WEIGHT_DECAY, denoising_factors, weight_decay_factors
from models.fit.factor_model import FactorModel
from models.fit.implicit_models import ALGORITHMS, ImplicitParams, train_implicit
from models.fit.svd import TruncatedSVD
from models.inputs.factors import ImportedFactors, users_from_items

RESERVED_NAMES: tuple[str, ...] = (*MODELS, *ALGORITHMS)


@dataclass(frozen=True)
class ModelChoice:
    """Which models besides the closed forms: implicit algorithms to train, factor sets to import (name, path)."""

    train: tuple[str, ...] = ()
    implicit: ImplicitParams = field(default_factory=ImplicitParams)
    imports: tuple[tuple[str, str], ...] = ()  # (model name, path)

    def validate(self) -> None:
        """InputError naming the flag: unknown algorithms, repeated or reserved model names, bad hyper-parameters."""
        unknown = [a for a in self.train if a not in ALGORITHMS]
        if unknown:
            raise InputError(
                f"--train: unknown algorithm(s) {', '.join(unknown)}; expected a comma-separated subset of {','.join(ALGORITHMS)}"
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


def fit_models(
    X: sp.csr_matrix,
    svd: TruncatedSVD,
    lambda_denoising: float,
    lambda_weight_decay: float,
    choice: ModelChoice,
    imported: Mapping[str, ImportedFactors],
    seed: int,
    progress: Progress,
) -> Iterator[FactorModel]:
    """The closed forms of `svd` (of X), then the implicit models trained on X, then the imported factors.

    Closed forms: P = X A, Q = B (PAPER.md). Implicit: its user and item factors. Imported: their
    factors; without user factors P = X Q (a user is the sum of the item vectors it consumed).
    """
    XV = X @ svd.V  # (n_users, k): one sparse product shared by every closed form (see _user_embeddings)
    for model in MODELS:
        with progress.step(f"model {model}"):
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
            }
            group = DENOISING_GROUP if model in DENOISING_VARIANTS else model
            P = _user_embeddings(X, XV, svd.V, A)
        yield FactorModel(name=model, P=P, Q=B, source="closed-form", info=info, projected_group=group)
    del XV
    factors = choice.implicit.factors or svd.k
    for algorithm in choice.train:
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


def _user_embeddings(X: sp.csr_matrix, XV: np.ndarray, V: np.ndarray, A: np.ndarray) -> np.ndarray:
    """P = X A (n_users, k) from XV = X V (n_users, k), V and A (n_items, k).

    Every closed form has A = V diag(a), so X A = (X V) diag(a): a column scaling instead of a
    sparse product per model. a is recovered column by column (a_j = <A_j, V_j> / <V_j, V_j>) and
    checked; an A of any other form gets the sparse product.
    """
    vv = np.einsum("ij,ij->j", V, V)
    a = np.einsum("ij,ij->j", A, V) / np.where(vv > 0, vv, 1.0)
    if np.allclose(A, V * a, rtol=1e-12, atol=0.0):
        return XV * a
    return X @ A
