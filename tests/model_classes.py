"""Importable classes for the model tests: a loading process must be able to import them."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin


class TinyNet(torch.nn.Module):
    def __init__(self, n_in: int, hidden: int = 8) -> None:
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(n_in, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 2)
        )

    def forward(self, x: torch.Tensor) -> Any:
        return self.layers(x)


class Doubler(BaseEstimator, TransformerMixin):  # type: ignore[misc]
    """A custom transformer: not on skops' list of trusted types."""

    def fit(self, x: Any, y: Any = None) -> Doubler:
        return self

    def transform(self, x: Any) -> Any:
        return np.asarray(x) * 2
