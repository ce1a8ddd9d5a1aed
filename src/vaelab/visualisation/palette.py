"""Colours, and past twenty classes markers, that keep every class apart in the latent scatters and legends.

Up to ten classes: tab10, so MNIST's digits keep the colours of every earlier vaelab figure. Up to twenty:
tab20's twenty colours (tab10's, then their light shades). Beyond: the twenty colours again with a further
marker for each further twenty (circle, square, triangle, diamond, inverted triangle), so up to 100 classes
no two share a colour and a marker. A hue wheel was used before: with 15 classes its first and last were the
same red. Any two colours that share a marker differ by at least ``MIN_DELTA_E`` (CIEDE2000), checked in
``tests/test_visualisation.py`` with scikit-image's colour difference.
"""

from __future__ import annotations

import matplotlib
import numpy as np
from matplotlib.colors import ListedColormap

TAB10 = matplotlib.colormaps["tab10"]
_TAB20 = matplotlib.colormaps["tab20"].colors
TWENTY = ListedColormap([*_TAB20[0::2], *_TAB20[1::2]], name="vaelab-classes")  # tab10's colours first
MARKERS = ("o", "s", "^", "D", "v")
DISTINCT_CLASSES = TWENTY.N * len(MARKERS)
MIN_DELTA_E = 12.0


def class_cmap(classes: int) -> ListedColormap:
    """The colour map a scatter's class values (``class_value``) index, from -0.5 to ``N - 0.5``."""
    return TAB10 if classes <= TAB10.N else TWENTY


def class_value(labels: np.ndarray, classes: int) -> np.ndarray:
    """Each label's index into ``class_cmap(classes)``."""
    return labels if classes <= TAB10.N else labels % TWENTY.N


def class_marker(labels: np.ndarray, classes: int) -> np.ndarray:
    """Each label's marker: a circle for the first twenty classes, then one further shape per twenty."""
    if classes <= TWENTY.N:
        return np.full(len(labels), MARKERS[0])
    return np.asarray(MARKERS)[(np.asarray(labels) // TWENTY.N) % len(MARKERS)]


def class_style(label: int, classes: int) -> tuple[tuple[float, ...], str]:
    """(colour, marker) of one class, as its legend entry shows it."""
    cmap = class_cmap(classes)
    return cmap(int(class_value(np.array([label]), classes)[0])), str(class_marker(np.array([label]), classes)[0])
