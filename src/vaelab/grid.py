"""A study's axes: which settings it varies, the runs of their grid, and each run's directory name.

``--vary beta=0.5,1,4`` is an axis over ``train.beta``; ``-z 2,4,16`` the latent-size axis; ``--seeds 3``
repeats every cell of the grid with three seeds (replicates, not an axis of the comparison). Several
axes make a grid, their product. Values are parsed and checked by the run configuration's own types and
rules (``config.parse_setting``, ``config.with_settings``), so a bad key or value is a ConfigError naming
them before anything trains. A study that varies only the latent size, once per size, keeps the
``latent_<z>/`` directories of earlier vaelab versions; any other grid names each run by its
coordinates, e.g. ``beta=0.5,z=2,seed=1/``.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

from . import architectures, rundir
from .config import ALIASES, RunConfig, parse_setting, resolve_key, with_settings
from .errors import ConfigError

LATENT_KEY = "model.latent_dim"
SEED_KEY = "train.seed"
SHORT_NAMES = {**{key: alias for alias, key in reversed(ALIASES.items())}, LATENT_KEY: "z", SEED_KEY: "seed"}


@dataclass(frozen=True)
class Axis:
    key: str  # the field's dotted name
    values: tuple[Any, ...]  # as the field holds them, in the order given

    @property
    def name(self) -> str:
        """The short name runs and figures use: ``beta`` for train.beta, ``z`` for the latent size."""
        return short_name(self.key)


def short_name(key: str) -> str:
    return SHORT_NAMES.get(key, key)


def split_values(text: str) -> list[str]:
    """Comma-separated values, where a bracketed list (``[512,256]``) is one value."""
    values, depth, current = [], 0, ""
    for char in text:
        depth += (char == "[") - (char == "]")
        if char == "," and depth == 0:
            values.append(current)
            current = ""
        else:
            current += char
    values.append(current)
    return [v.strip() for v in values]


def parse_axis(text: str) -> Axis:
    """``KEY=V1,V2,...`` (Hydra's multirun grammar) as an Axis; a ConfigError names the key or value."""
    key, equals, values = text.partition("=")
    if not equals or not key.strip():
        raise ConfigError(f"--vary {text!r}: expected KEY=V1,V2,... (for example beta=0.5,1,4 or "
                          "model.arch=mlp,conv).", key=key.strip() or None)
    if key.strip() in ("seed", SEED_KEY):
        raise ConfigError("--vary seed=...: seeds are replicates, not an axis; use --seeds N or --seed-list "
                          "0,1,2.", key=SEED_KEY)
    key = resolve_key(key)
    texts = split_values(values)
    if any(not t for t in texts):
        raise ConfigError(f"--vary {text!r}: an empty value; give comma-separated values after '='.", key=key)
    parsed = tuple(parse_setting(key, t) for t in texts)
    for value in parsed:
        check_value(key, value)
    return Axis(key, tuple(dict.fromkeys(parsed)))


def axis_of(key: str, values: Any) -> Axis:
    """An Axis from Python values (``{"train.beta": [0.5, 1, 4]}``); strings are parsed as on the command line."""
    if key in ("seed", SEED_KEY):
        raise ConfigError("seeds are replicates, not an axis: pass seeds=N or seeds=[0, 1, 2].", key=SEED_KEY)
    key = resolve_key(key)
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ConfigError(f"the values of axis {key} must be a list, got {values!r}.", key=key)
    parsed = [parse_setting(key, v) if isinstance(v, str) else (tuple(v) if isinstance(v, list) else v)
              for v in values]
    if not parsed:
        raise ConfigError(f"axis {key} has no values.", key=key)
    for value in parsed:
        check_value(key, value)
    return Axis(key, tuple(dict.fromkeys(parsed)))


def check_value(key: str, value: Any) -> None:
    """The value alone against the field's rules (its type, range or choices), naming key and value."""
    try:
        with_settings(RunConfig(), {key: value, **_companions(key, value)})
    except ConfigError as exc:
        if exc.key == key:
            raise ConfigError(f"--vary {short_name(key)}={value_text(value)}: {exc}", key=key) from None


def _companions(key: str, value: Any) -> dict[str, Any]:
    """Settings a value needs to be checked on its own: an architecture that allows only some likelihoods
    (resnet-spatial: Gaussian ones) is checked with the first of them."""
    if key == "model.arch" and value in architectures.names() and architectures.get(value).likelihoods:
        return {"model.likelihood": architectures.get(value).likelihoods[0]}
    return {}


def value_text(value: Any) -> str:
    """A value as a run's name and the report show it: 0.5, 1e-04, gaussian, 512-256."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return "-".join(value_text(v) for v in value)
    return re.sub(r"[^A-Za-z0-9._+-]", "_", str(value))


@dataclass(frozen=True)
class PlannedRun:
    """One run of the grid: its coordinates (dotted key -> value), its directory name and its config."""

    coords: tuple[tuple[str, Any], ...]  # every axis, then the seed when seeds replicate
    dir_name: str
    config: RunConfig

    @property
    def cell(self) -> tuple[tuple[str, Any], ...]:
        """The coordinates without the seed: the runs of one cell differ only in their seed."""
        return tuple((k, v) for k, v in self.coords if k != SEED_KEY)


@dataclass(frozen=True)
class Grid:
    axes: tuple[Axis, ...]  # the latent-size axis included
    seeds: tuple[int, ...] | None  # None: one run per cell with the configured seed, no seed coordinate

    @property
    def latent_only(self) -> bool:
        """A study of latent sizes alone, as vaelab has always run it (``latent_<z>/`` directories)."""
        return self.seeds is None and [a.key for a in self.axes] == [LATENT_KEY]

    def plan(self, base: RunConfig) -> list[PlannedRun]:
        """Every run of the grid, in order (the first axis varies slowest, seeds fastest); their configs
        are validated together here, so a combination the model cannot build fails before anything trains."""
        seeds = self.seeds if self.seeds is not None else (None,)
        runs = []
        for values in itertools.product(*(a.values for a in self.axes), seeds):
            *cell, seed = values
            coords = [(a.key, v) for a, v in zip(self.axes, cell, strict=True)]
            if seed is not None:
                coords.append((SEED_KEY, seed))
            try:
                config = with_settings(base, dict(coords))
            except ConfigError as exc:
                where = ", ".join(f"{short_name(k)}={value_text(v)}" for k, v in coords)
                raise ConfigError(f"the run {where} cannot be built: {exc}", key=exc.key) from None
            runs.append(PlannedRun(tuple(coords), self.dir_name(coords), config))
        return runs

    def dir_name(self, coords: list[tuple[str, Any]]) -> str:
        if self.latent_only:
            return rundir.run_dir_name(coords[0][1])
        return ",".join(f"{short_name(k)}={value_text(v)}" for k, v in coords)

    def to_dict(self) -> dict[str, Any]:
        return {"axes": [{"key": a.key, "values": [list(v) if isinstance(v, tuple) else v for v in a.values]}
                         for a in self.axes],
                "seeds": list(self.seeds) if self.seeds is not None else None}


def make_grid(latent_dims: list[int], axes: list[Axis], seeds: list[int] | None) -> Grid:
    """The study's grid: the ``--vary`` axes in the order given, then the latent sizes (unless an axis
    varies them), and the seeds. Two axes over one setting are a ConfigError."""
    keys = [a.key for a in axes]
    duplicated = {k for k in keys if keys.count(k) > 1}
    if duplicated:
        raise ConfigError(f"--vary names {short_name(duplicated.pop())} twice; give all its values in one --vary.")
    if LATENT_KEY not in keys:
        axes = [*axes, Axis(LATENT_KEY, tuple(latent_dims))]
    if seeds is not None:
        if len(set(seeds)) != len(seeds) or not seeds:
            raise ConfigError(f"the seeds must be distinct, got {seeds}.", key=SEED_KEY)
        for seed in seeds:
            check_value(SEED_KEY, seed)
    return Grid(tuple(axes), tuple(seeds) if seeds is not None else None)


def grid_from_dict(raw: dict[str, Any]) -> Grid:
    """The grid a study.json recorded (``to_dict``); values are re-read through the config's types."""
    axes = tuple(Axis(a["key"], tuple(tuple(v) if isinstance(v, list) else v for v in a["values"]))
                 for a in raw["axes"])
    seeds = raw.get("seeds")
    return Grid(axes, tuple(seeds) if seeds is not None else None)


def merged(old: Grid, new: Grid) -> Grid:
    """A resumed study's grid: the recorded axes with the values given now added (new axes appended)."""
    axes = {a.key: list(a.values) for a in old.axes}
    for axis in new.axes:
        axes.setdefault(axis.key, [])
        axes[axis.key] += [v for v in axis.values if v not in axes[axis.key]]
    seeds = old.seeds
    if new.seeds is not None:
        seeds = tuple(dict.fromkeys([*(old.seeds or ()), *new.seeds]))
    return Grid(tuple(Axis(k, tuple(v)) for k, v in axes.items()), seeds)


def coords_text(coords: tuple[tuple[str, Any], ...]) -> str:
    return ", ".join(f"{short_name(k)} {value_text(v)}" for k, v in coords)
