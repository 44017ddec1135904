"""The sweep spec (``SPEC.yaml``): a base scene, the parameters to vary, the seeds → runs.

Every run's scene is resolved and validated (:func:`~cyberknife_sim.scene.scene_from_dict`)
when the spec is loaded, before anything runs; a problem is one line naming the spec file,
the spec section and scene key path, and the value. See ``docs/sweep_spec.md``.
"""

from __future__ import annotations

import copy
import difflib
import glob
import json
import math
import stat
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..errors import SceneError
from ..scene import load_scene
from ..scene._base import ScenePath, items
from ..scene._load import (
    _MESSAGES,
    MAX_FILE_BYTES,
    _key_text,
    _model_in,
    _one_line,
    _parse_yaml,
    _short,
)
from ._expand import RunSpec, expand_runs

__all__ = ["MAX_RUNS", "Distribution", "RunSpec", "SweepSpec", "load_sweep_spec"]

MAX_RUNS = 100_000
"""Most runs one spec may expand to (a sweep of 1,000 runs resolves in about a second)."""
SEED_MAX = 2**63 - 1
"""Largest seed (as ``simulation.seed`` in the scene schema)."""

_Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]
_KINDS = ("uniform", "loguniform", "choice", "randint")


class _Part(BaseModel):
    """A frozen spec section: strictly typed, unknown keys rejected (as a scene section)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)


class Distribution(_Part):
    """One random parameter: exactly one of the four keys.

    ``uniform: [lo, hi]`` and ``loguniform: [lo, hi]`` (0 < lo) draw floats in [lo, hi);
    ``randint: [lo, hi]`` draws integers in lo..hi, both ends included; ``choice: [a, b, ...]``
    draws one of the listed values (each equally likely).
    """

    uniform: Annotated[tuple[float, float], items(2, 2)] | None = None
    loguniform: Annotated[tuple[float, float], items(2, 2)] | None = None
    choice: Annotated[tuple[Any, ...], items(1)] | None = None
    randint: Annotated[tuple[int, int], items(2, 2)] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Distribution:
        given = [k for k in _KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(_KINDS)} "
                             f"(got {', '.join(given) or 'none'})")
        lo, hi = (self.uniform or self.loguniform or self.randint or (0, 1))
        if lo > hi or (lo == hi and self.randint is None):
            raise ValueError(f"{given[0]}: [lo, hi] needs lo < hi")
        if self.loguniform is not None and lo <= 0:
            raise ValueError(f"loguniform: lo must be > 0 (got {lo})")
        return self

    def sample(self, rng: np.random.Generator, n: int) -> list[Any]:
        """``n`` draws from ``rng`` as plain Python values (float, int or a listed value)."""
        if self.uniform is not None:
            return [float(v) for v in rng.uniform(*self.uniform, size=n)]
        if self.loguniform is not None:
            lo, hi = np.log(self.loguniform)
            return [float(v) for v in np.exp(rng.uniform(lo, hi, size=n))]
        if self.randint is not None:
            return [int(v) for v in rng.integers(*self.randint, size=n, endpoint=True)]
        return [copy.deepcopy(self.choice[i]) for i in rng.integers(len(self.choice), size=n)]

    def describe(self) -> str:
        """``uniform [0.05, 0.25]`` etc., for the dry run."""
        kind = next(k for k in _KINDS if getattr(self, k) is not None)
        return f"{kind} {list(getattr(self, kind))}"


class RandomPart(_Part):
    """``random``: ``n`` samples of ``params`` drawn from ``numpy.random.default_rng(seed)``."""

    n: int = Field(ge=1, le=MAX_RUNS, description="number of samples")
    seed: _Seed = Field(0, description="seed of the sampling generator")
    params: dict[str, Distribution] = Field(min_length=1, description="key path → distribution")


class TracesPart(_Part):
    """``traces``: recorded trace files (globs relative to the spec file) for one scene key."""

    key: str = Field("motion.trace.file", description="the scene key each file goes to")
    files: Annotated[tuple[str, ...], items(1)] = Field(description="globs")


class SweepSpec(_Part):
    """A validated sweep spec; :meth:`runs` gives its runs (resolved when loaded).

    Build it with :func:`load_sweep_spec`. ``base`` is the absolute path of the base scene;
    ``source`` the spec file.
    """

    name: str = Field("", pattern=r"^[A-Za-z0-9_-]*$", max_length=100,
                      description="short name (letters, digits, _ -); default: the file's stem")
    description: str = Field("", description="free text")
    base: ScenePath = Field(description="the base scene, relative to the spec file")
    set: dict[str, Any] = Field(default_factory=dict, description="fixed overrides")
    grid: dict[str, Annotated[tuple[Any, ...], items(1)]] = Field(
        default_factory=dict, description="key path → values (cartesian product)")
    random: RandomPart | None = Field(None, description="random samples, crossed with the grid")
    traces: TracesPart | None = Field(None, description="trace files, crossed with the rest")
    seeds: Annotated[tuple[_Seed, ...], items(1)] | None = Field(
        None, description="simulation.seed of each run: a list or {range: [first, stop]}")
    imaging: Literal["xray", "truth"] = Field("xray", description="the simulate() imaging seam")
    source: Path | None = Field(None, exclude=True, description="(set by the loader) the file")

    _runs: list[RunSpec] = PrivateAttr(default_factory=list)
    _trace_files: list[Path] = PrivateAttr(default_factory=list)

    @field_validator("base")
    @classmethod
    def _resolve_base(cls, value: Path, info: ValidationInfo) -> Path:
        path = Path((info.context or {}).get("spec_dir", ".")) / value
        if not path.exists():
            raise ValueError(f"scene file not found: {path}")
        return path.resolve()

    @field_validator("seeds", mode="before")
    @classmethod
    def _seed_range(cls, value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) != {"range"} or not isinstance(value["range"], list) or len(
                    value["range"]) != 2 or not all(type(v) is int for v in value["range"]):
                raise ValueError("give a list of seeds or {range: [first, stop]}")
            first, stop = value["range"]
            if not 0 <= first < stop or stop - first > MAX_RUNS:
                raise ValueError(f"range [first, stop] needs 0 <= first < stop and at "
                                 f"most {MAX_RUNS} seeds (got [{first}, {stop}])")
            return list(range(first, stop))
        return value

    def _paths(self) -> list[tuple[str, str]]:
        """(spec section, key path) of every override."""
        out = [("set", p) for p in self.set] + [("grid", p) for p in self.grid]
        if self.random is not None:
            out += [("random.params", p) for p in self.random.params]
        if self.traces is not None:
            out.append(("traces.key", self.traces.key))
        return out

    @property
    def varied(self) -> list[str]:
        """Key paths of the varied parameters (grid, random, traces), in spec order."""
        return [p for where, p in self._paths() if where != "set"]

    @property
    def trace_files(self) -> list[Path]:
        """The trace files the globs matched (absolute, sorted per glob)."""
        return list(self._trace_files)

    def runs(self) -> list[RunSpec]:
        """Every run: grid (key order, last key fastest) × random samples × traces × seeds.

        Runs whose resolved scene is identical (a repeated random draw) appear once.
        """
        return list(self._runs)


# ----------------------------------------------------------------------------- loading


def _read_text(path: Path, origin: str) -> str:
    try:
        st = path.stat()
    except OSError:
        raise SceneError([f"{origin}: sweep spec not found"]) from None
    if not stat.S_ISREG(st.st_mode):
        raise SceneError([f"{origin}: not a regular file (a folder, device or FIFO)"])
    if st.st_size > MAX_FILE_BYTES:
        raise SceneError([f"{origin}: {st.st_size} bytes is too large for a sweep spec"])
    try:
        return path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise SceneError([f"{origin}: cannot read the spec ({exc.strerror or exc})"]) from None
    except UnicodeDecodeError:
        raise SceneError([f"{origin}: not a UTF-8 YAML text file"]) from None


def _spec_model_at(loc: tuple) -> type[BaseModel]:
    """The spec section class holding the key at ``loc`` (dict keys and indices skipped)."""
    model: type[BaseModel] = SweepSpec
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is not None:
            model = _model_in(field.annotation) or model
    return model


def _spec_problem(err: dict[str, Any], origin: str) -> str:
    loc = tuple(err["loc"])
    where = ".".join(_key_text(p) for p in loc) or "(top level)"
    msg = _MESSAGES.get(err["type"], err["msg"]).removeprefix("Value error, ")
    line = f"{origin}: {where}: {msg}"
    if err["type"] != "missing":
        line += f" (got {_short(err.get('input'))})"
    if err["type"] == "extra_forbidden":
        fields = list(_spec_model_at(loc[:-1]).model_fields)
        close = difflib.get_close_matches(str(loc[-1]), fields, n=1, cutoff=0.6)
        line += f"; did you mean '{close[0]}'?" if close else ""
    return _one_line(line)


def load_sweep_spec(path: str | Path) -> SweepSpec:
    """Read a sweep spec, validate it and resolve and validate every run's scene.

    Parameters
    ----------
    path : str or Path
        The spec YAML file; ``base`` and ``traces.files`` are relative to its folder.

    Returns
    -------
    SweepSpec
        With its runs resolved (:meth:`SweepSpec.runs`).

    Raises
    ------
    SceneError
        One line per problem, each naming the spec file: unreadable spec, unknown spec key,
        missing or bad base scene, a key path not in the scene schema (with a suggestion), a
        glob that matches no file, a value the scene rejects (``spec: grid.a.b: ... (got
        X)``).
    """
    path = Path(path)
    origin = _one_line(str(path))
    data = _parse_yaml(_read_text(path, origin), origin)
    if not isinstance(data, dict):
        raise SceneError([f"{origin}: (top level): a sweep spec must be a mapping of keys "
                          f"(got {type(data).__name__})"])
    try:
        spec = SweepSpec.model_validate(data, context={"spec_dir": str(path.parent)})
    except ValidationError as exc:
        raise SceneError([_spec_problem(e, origin) for e in exc.errors()]) from None
    spec = spec.model_copy(update={"name": spec.name or path.stem, "source": path.resolve()})
    try:
        base_scene = load_scene(spec.base)
    except SceneError as exc:
        raise SceneError([f"{origin}: base: {p}" for p in exc.problems]) from None
    base_raw = _parse_yaml(_read_text(spec.base, str(spec.base)), str(spec.base))
    _check_parts(spec, origin)
    spec._trace_files = _trace_files(spec, path.parent, origin)
    spec._runs = expand_runs(spec, base_raw, base_scene.model_dump(mode="json"), origin)
    return spec


def _check_parts(spec: SweepSpec, origin: str) -> None:
    """Overrides that collide, repeated values, too many runs: SceneError (one line)."""
    seen: dict[str, str] = {}
    problems = []
    for where, path in spec._paths():
        if path in seen:
            problems.append(f"{origin}: {where}.{path}: also in {seen[path]}")
        seen[path] = where
    if spec.seeds is not None and "simulation.seed" in seen:
        problems.append(f"{origin}: {seen['simulation.seed']}.simulation.seed: not allowed "
                        "with `seeds` (each run's seed comes from `seeds`)")
    for where, values in [*(("grid." + p, v) for p, v in spec.grid.items()),
                          ("seeds", spec.seeds or ())]:
        keys = [json.dumps(v, sort_keys=True, default=str) for v in values]
        if len(set(keys)) != len(keys):
            problems.append(f"{origin}: {where}: a value is listed twice (got {_short(values)})")
    n = math.prod(len(v) for v in spec.grid.values()) * len(spec.seeds or (0,))
    n *= spec.random.n if spec.random is not None else 1
    if n > MAX_RUNS:
        problems.append(f"{origin}: the spec expands to {n:,} runs (before traces), more than "
                        f"{MAX_RUNS:,}")
    if problems:
        raise SceneError([_one_line(p) for p in problems])


def _trace_files(spec: SweepSpec, spec_dir: Path, origin: str) -> list[Path]:
    if spec.traces is None:
        return []
    files: list[Path] = []
    for pattern in spec.traces.files:
        full = Path(pattern) if Path(pattern).is_absolute() else spec_dir / pattern
        found = sorted(Path(p).resolve() for p in glob.glob(str(full), recursive=True)
                       if Path(p).is_file())
        if not found:
            raise SceneError([_one_line(f"{origin}: traces.files: no file matches {pattern!r} "
                                        f"(relative to {spec_dir.resolve()})")])
        files += [f for f in found if f not in files]
    return files
