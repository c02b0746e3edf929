"""A served model: any factorisation Xhat = P Q^T, whatever fitted it.

Every model the job serves, closed form, trained (implicit, cosine-mf) or imported, is reduced to this
pair; the indexes, the gauge probe and the evaluation need nothing else (METHODS.md, "Any
factorisation"). The projected metric depends only on Xhat, so models with the same Xhat (the
denoising D-variants) share one `projected_group` and one set of projected files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

# closed-form: the paper's objectives from the SVD; implicit: the implicit library; trained: our own optimiser
# (cosine-mf); imported: factors from files
Source = Literal["closed-form", "implicit", "trained", "imported"]


@dataclass(frozen=True, eq=False)
class FactorModel:
    """P (n_users, k) and Q (n_items, k): the prediction of user u for item i is <P_u, Q_i>.

    info: the manifest's JSON-able description of the model ("source" and how it was fitted).
    """

    name: str
    P: np.ndarray
    Q: np.ndarray
    source: Source
    info: dict[str, Any]
    projected_group: str

    def __post_init__(self) -> None:
        if self.P.ndim != 2 or self.Q.ndim != 2 or self.P.shape[1] != self.Q.shape[1]:
            raise ValueError(f"model {self.name}: P {self.P.shape} and Q {self.Q.shape} are not (n_users, k), (n_items, k)")
