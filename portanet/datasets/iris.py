"""Fisher's Iris data (150 flowers, 4 measurements in cm, 3 species), shipped with the package."""
from __future__ import annotations

import pathlib

import numpy as np

FEATURES = ("sepal length", "sepal width", "petal length", "petal width")
CLASSES = ("setosa", "versicolor", "virginica")


def load_iris():
    """(x, y): x float64 (150, 4), y int64 (150,) with 0 setosa, 1 versicolor, 2 virginica."""
    path = pathlib.Path(__file__).with_name("iris.csv")
    rows = np.loadtxt(path, delimiter=",", skiprows=1)
    return rows[:, :4].astype(np.float64), rows[:, 4].astype(np.int64)
