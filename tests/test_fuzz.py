"""A fuzz suite that keeps user errors one line: damaged scenes, CT files, image pairs, traces.

Every case calls the CLI in-process (``cyberknife_sim.cli.main``) on a mutated input and
asserts the promise of DESIGN.md:

* the exit code is 0, 2 or 3 (no exception escapes ``main``: no traceback);
* on an error, stderr holds only ``cksim <command>: ...`` lines (C++ library chatter and
  Python warnings included, ``capfd`` reads file descriptor 2): exactly one for most
  commands, one per problem for ``validate``;
* no hang: each case runs under ``signal.alarm`` (``CASE_TIMEOUT_S``);
* no silent wrong answer: an input accepted (exit 0) gives finite results — a DRR of finite
  line integrals, a finite pose, a finite relative RMS, a scene whose numbers are finite.

Hypothesis draws the mutations from a fixed seed (``derandomize=True``): the fast variant
runs ~200 cases in CI; ``-m slow`` runs ≥ 1000. Each test prints its outcome counts
(``pytest -s``).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import math
import re
import signal
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cyberknife_sim.cli import main

CASE_TIMEOUT_S = 60
SCENES = sorted(Path("scenes").glob("*.yaml"))
FAST = {"scene": 80, "ct": 40, "images": 30, "trace": 50}
SLOW = {"scene": 400, "ct": 250, "images": 150, "trace": 250}


class Hang(Exception):
    """A case ran past CASE_TIMEOUT_S."""


@contextlib.contextmanager
def time_limit(seconds: int):
    def _raise(signum, frame):
        raise Hang(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, _raise)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def call(argv: list[str], capfd, *, many_lines: bool = False) -> tuple[int, str]:
    """Run ``cksim argv``; check the exit code and stderr; return (code, stdout)."""
    capfd.readouterr()
    with time_limit(CASE_TIMEOUT_S):
        code = main(argv)
    out, err = capfd.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code in (0, 2, 3), f"exit {code}: {err[-2000:]}"
    assert "Traceback" not in err, err[-3000:]
    prefix = f"cksim {argv[0]}:"
    assert all(ln.startswith(prefix) for ln in lines), f"not all lines are cksim's:\n{err}"
    if code != 0:
        assert lines, "an error must say why"
        if not many_lines:
            errors = [ln for ln in lines if ": warning:" not in ln]
            assert len(errors) == 1, f"{len(errors)} error lines:\n{err}"
    return code, out


def _tally(counts: Counter, code: int) -> None:
    counts[{0: "accepted", 2: "refused (exit 2)", 3: "registration failed (exit 3)"}[code]] += 1


# ---- scenes -------------------------------------------------------------------------------
JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1e-12, 1e308, -0.0, 2**63, "", " ", "12.5", "yes", "\n", "a\nb",
                     "é" * 300, "../" * 50, "/dev/zero", "/proc/self/mem", ".", "scenes"]),
    st.text(max_size=40),
    st.lists(st.floats(allow_nan=True), max_size=5),
    st.dictionaries(st.text(max_size=8), st.integers(), max_size=3),
)


def _leaf_paths(node, path=()):
    if isinstance(node, dict):
        if not node:
            yield path
        for k, v in node.items():
            yield from _leaf_paths(v, (*path, k))
    elif isinstance(node, list):
        if not node:
            yield path
        for i, v in enumerate(node):
            yield from _leaf_paths(v, (*path, i))
    else:
        yield path


def _set(data, path, value):
    node = data
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value


def _finite_numbers(node) -> bool:
    if isinstance(node, float):
        return math.isfinite(node)
    if isinstance(node, dict):
        return all(_finite_numbers(v) for v in node.values())
    if isinstance(node, list | tuple):
        return all(_finite_numbers(v) for v in node)
    return True


@st.composite
def scene_text(draw):
    src = draw(st.sampled_from(SCENES))
    text = src.read_text(encoding="utf-8")
    kind = draw(st.sampled_from(["value", "value", "value", "delete", "unknown", "text",
                                 "structure"]))
    if kind == "structure":  # hostile YAML: deep nesting, alias bombs, binary, wrong tops
        key = draw(st.sampled_from(["motion", "tracking", "room", "junk"]))
        depth = draw(st.sampled_from([50, 3000]))
        bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
            f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
            for p, c in zip("abcdefgh", "bcdefghi", strict=True))
        return draw(st.sampled_from([
            text + f"{key}: " + "[" * depth + "]" * depth + "\n",
            text + f"{key}: " + "{a: " * depth + "1" + "}" * depth + "\n",
            bomb + text,
            text + "name: !!binary aGVsbG8=\n",
            "- " + text.replace("\n", "\n  "),
            "just a string\n",
            "",
            "# only a comment\n",
        ]))
    if kind == "text":  # damage the YAML text itself
        cut = draw(st.integers(0, len(text)))
        insert = draw(st.sampled_from(["", ": :", "\t", "- [", "&a [*a]", "\x00", "{",
                                       "!!python/object:os.system ''", "key: 1\nkey: 2\n",
                                       "\ufeff", "%YAML 9.9\n"]))
        return text[:cut] + insert + text[cut:]
    data = yaml.safe_load(text)
    paths = list(_leaf_paths(data))
    path = draw(st.sampled_from(paths))
    if kind == "delete" and len(path) > 1:
        node = data
        for p in path[:-1]:
            node = node[p]
        del node[path[-1]]
    elif kind == "unknown":
        parent = path[:-1] if len(path) > 1 else ()
        node = data
        for p in parent:
            node = node[p]
        if isinstance(node, dict):
            node[draw(st.text(min_size=1, max_size=12))] = draw(JUNK)
    else:
        _set(data, path, draw(JUNK))
    return yaml.safe_dump(data, allow_unicode=True)


def _fuzz_scenes(n: int, tmp_path: Path, capfd) -> Counter:
    counts: Counter = Counter()
    f = tmp_path / "fuzzed.yaml"

    @settings(max_examples=n, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(scene_text())
    def case(text):
        f.write_text(text, encoding="utf-8")
        code, _ = call(["validate", str(f)], capfd, many_lines=True)
        if code == 0:  # accepted: every number finite
            from cyberknife_sim.scene import load_scene

            assert _finite_numbers(load_scene(f).model_dump(mode="json"))
        _tally(counts, code)

    case()
    return counts


# ---- CT files -------------------------------------------------------------------------------
def _small_ct(path: Path) -> None:
    """A 48 x 40 x 24 CT at 4 mm: a water body with a bone block around the target."""
    hu = np.full((24, 40, 48), -1000, dtype=np.int16)
    hu[:, 6:34, 6:42] = 40
    hu[8:16, 16:26, 18:30] = 900
    img = sitk.GetImageFromArray(hu)
    img.SetSpacing((4.0, 4.0, 4.0))
    img.SetOrigin((-96.0, -80.0, -48.0))
    sitk.WriteImage(img, str(path))


def _ct_scene(folder: Path, ct: Path) -> Path:
    scene = {"name": "fuzz", "patient": {"ct": str(ct), "target_ct_mm": [0.0, 4.0, 0.0],
                                         "target_radius_mm": 8},
             "room": {"imaging": {"binning": 8}}}
    path = folder / f"scene_{ct.name.replace('.', '_')}.yaml"
    path.write_text(yaml.safe_dump(scene), encoding="utf-8")
    return path


@st.composite
def damaged_bytes(draw, data: bytes):
    kind = draw(st.sampled_from(["cut", "flip", "flip", "header", "zero", "append"]))
    b = bytearray(data)
    if kind == "cut":
        return bytes(b[: draw(st.integers(0, len(b) - 1))])
    if kind == "zero":
        start = draw(st.integers(0, len(b) - 1))
        b[start:start + draw(st.integers(1, 512))] = bytes(min(512, len(b) - start))
        return bytes(b)[: len(data)]
    if kind == "append":
        return bytes(b) + draw(st.binary(min_size=1, max_size=64))
    hi = min(len(b), 352) if kind == "header" else len(b)
    for _ in range(draw(st.integers(1, 8))):
        i = draw(st.integers(0, hi - 1))
        b[i] = draw(st.integers(0, 255))
    return bytes(b)


def _fuzz_ct(n: int, tmp_path: Path, capfd) -> Counter:
    counts: Counter = Counter()
    originals = {}
    for suffix in (".nii", ".nii.gz", ".mha", ".nrrd"):
        p = tmp_path / f"orig{suffix}"
        _small_ct(p)
        originals[suffix] = p.read_bytes()

    @settings(max_examples=n, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def case(data):
        suffix = data.draw(st.sampled_from(sorted(originals)))
        raw = originals[suffix]
        if suffix == ".nii.gz" and data.draw(st.booleans()):  # damage inside the gzip
            inner = data.draw(damaged_bytes(gzip.decompress(raw)))
            damaged = gzip.compress(inner)
        else:
            damaged = data.draw(damaged_bytes(raw))
        ct = tmp_path / f"ct{suffix}"
        ct.write_bytes(damaged)
        scene = _ct_scene(tmp_path, ct)
        out = tmp_path / "drr"
        code, _ = call(["drr", "--scene", str(scene), "--out", str(out)], capfd)
        if code == 0:  # accepted: line integrals finite and not all zero
            imgs = [np.load(p) for p in sorted(out.glob("*.npy"))]
            assert len(imgs) == 2
            assert all(np.isfinite(i).all() for i in imgs)
        _tally(counts, code)

    case()
    return counts


# ---- image pairs ----------------------------------------------------------------------------
def _mutate_image(draw, img: np.ndarray) -> np.ndarray:
    """A damaged copy of a live image (NaN, inf, zeros, shape, dtype, scale, ...)."""
    kind = draw(st.sampled_from(["nan", "inf", "zero", "shape", "dtype", "empty", "scale",
                                 "noise", "ndim", "negative"]))
    a = img.copy()
    if kind == "nan":
        a.flat[draw(st.integers(0, a.size - 1))] = np.nan
    elif kind == "inf":
        a[...] = np.inf if draw(st.booleans()) else a
        a.flat[0] = np.inf
    elif kind == "zero":
        a[...] = 0
    elif kind == "shape":
        a = a[: draw(st.integers(1, a.shape[0] - 1))]
    elif kind == "dtype":
        with np.errstate(all="ignore"):
            a = a.astype(draw(st.sampled_from([np.int8, np.uint16, np.int64, np.bool_,
                                               np.float16, np.complex64])))
    elif kind == "empty":
        a = np.zeros((0,) + a.shape[1:], a.dtype) if draw(st.booleans()) else np.zeros(0)
    elif kind == "scale":
        with np.errstate(all="ignore"):
            a = a * draw(st.sampled_from([1e-30, 1e30, -1.0, 1e300]))
    elif kind == "noise":
        a = np.random.default_rng(draw(st.integers(0, 99))).normal(0, 3, a.shape)
    elif kind == "ndim":
        a = a[None] if draw(st.booleans()) else a.ravel()
    else:
        a = -np.abs(a)
    return a


def _mutate_geometry(draw, geo: dict, path: Path) -> Path:
    """A damaged copy of geometry.json (junk values, ragged matrices, cut text)."""
    g = json.loads(json.dumps(geo))
    view = draw(st.integers(0, len(g["views"]) - 1))
    key = draw(st.sampled_from(["mu_water_per_mm", "room_from_ct", "projection_matrix",
                                "detector_shape", "pixel_spacing_mm", "source_room",
                                "views"]))
    junk = draw(st.sampled_from(["x", None, 0, -1.0, float("nan"), [], [[1, 2], [3]],
                                 [["a"] * 4] * 3, 1e308, {"a": 1}, [1, 2, 3]]))
    if key == "room_from_ct":
        g["ct"][key] = junk
    elif key in ("mu_water_per_mm", "views"):
        g[key] = junk
    else:
        g["views"][view][key] = junk
    text = json.dumps(g, allow_nan=True)
    if draw(st.booleans()):
        text = text[: draw(st.integers(0, len(text)))]
    path.write_text(text, encoding="utf-8")
    return path


def _fuzz_images(n: int, tmp_path: Path, capfd) -> Counter:
    counts: Counter = Counter()
    ct = tmp_path / "ct.nii.gz"
    _small_ct(ct)
    scene = _ct_scene(tmp_path, ct)
    ref = tmp_path / "ref"
    assert main(["drr", "--scene", str(scene), "--out", str(ref)]) == 0
    good = [np.load(ref / "A.npy"), np.load(ref / "B.npy")]
    geometry = ref / "geometry.json"

    geo = json.loads(geometry.read_text(encoding="utf-8"))
    bad_geometry = tmp_path / "bad_geometry.json"

    @settings(max_examples=n, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def case(data):
        geometry_used = geometry
        if data.draw(st.integers(0, 3)) == 0:  # a damaged geometry.json, good images
            geometry_used = _mutate_geometry(data.draw, geo, bad_geometry)
            imgs = [str(ref / "A.npy"), str(ref / "B.npy")]
            code, _ = call(["register", "--scene", str(scene), "--images", *imgs,
                            "--geometry", str(geometry_used)], capfd)
            _tally(counts, code)
            return
        paths = []
        for k, img in enumerate(good):
            a = _mutate_image(data.draw, img) if data.draw(st.booleans()) or k == 1 else img
            p = tmp_path / f"live{k}.npy"
            with np.errstate(all="ignore"):
                np.save(p, a)
            paths.append(str(p))
        code, out = call(["register", "--scene", str(scene), "--images", *paths,
                          "--geometry", str(geometry)], capfd)
        if code in (0, 3):  # a result was printed: a finite pose when accepted
            res = json.loads(out)
            assert res["accepted"] == (code == 0)
            if code == 0:
                assert all(math.isfinite(v) for v in res["pose"])
        _tally(counts, code)

    case()
    return counts


# ---- traces ---------------------------------------------------------------------------------
@st.composite
def trace_text(draw):
    t = np.arange(0, 60, 0.2)
    y = 5 * np.sin(2 * np.pi * t / 4.0)
    rows = [f"{a:.3f} {b:.5f} {b * 0.3:.5f} {-b:.5f}" for a, b in zip(t, y, strict=True)]
    kind = draw(st.sampled_from(["row", "row", "cell", "cut", "encoding", "bytes", "time"]))
    if kind == "row":
        i = draw(st.integers(0, len(rows) - 1))
        rows[i] = draw(st.sampled_from(["", "#", "nan nan nan nan", "1 2", "1 2 3 4 5 6",
                                        "x y z w", "1e400 0 0 0", "-1e300 1e300 0 0",
                                        "\x00", "1,2,3,4", "0.0 inf 0 0"]))
    elif kind == "cell":
        i = draw(st.integers(0, len(rows) - 1))
        cells = rows[i].split()
        cells[draw(st.integers(0, 3))] = draw(st.sampled_from(["nan", "inf", "-", "1e999",
                                                              "0x10", "1_000", "½"]))
        rows[i] = " ".join(cells)
    elif kind == "cut":
        rows = rows[: draw(st.integers(0, 5))]
    elif kind == "time":
        i = draw(st.integers(1, len(rows) - 1))
        cells = rows[i].split()
        cells[0] = draw(st.sampled_from(["0", "-5", "1e9", cells[0]]))
        rows[i] = " ".join(cells)
    text = "\n".join(rows) + "\n"
    if kind == "encoding":
        return text.encode(draw(st.sampled_from(["utf-16", "latin-1", "utf-32"])))
    if kind == "bytes":
        return draw(st.binary(min_size=0, max_size=200)) + text.encode()
    return text.encode("utf-8")


def _fuzz_traces(n: int, tmp_path: Path, capfd) -> Counter:
    counts: Counter = Counter()
    f = tmp_path / "trace.txt"
    out = tmp_path / "pred.csv"

    @settings(max_examples=n, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(trace_text(), st.sampled_from(["none", "linear", "nlms", "rls", "kalman"]),
           st.sampled_from([["--horizon-ms", "115"], ["--horizon-ms", "0"],
                            ["--rate-hz", "0"], ["--columns", "1"], ["--columns", "9"],
                            ["--time-unit-s", "0.1"], ["--skip-s", "100"]]))
    def case(raw, method, extra):
        f.write_bytes(raw)
        code, printed = call(["predict", "--trace", str(f), "--method", method, "--out",
                              str(out), *extra], capfd)
        if code == 0:  # accepted: the printed relative RMS is a finite number
            m = re.search(r"relative RMS\D*?([-+0-9.eE]+|nan|inf)\b", printed)
            assert m is not None, printed
            assert math.isfinite(float(m.group(1))), printed
        _tally(counts, code)

    case()
    return counts


# ---- the tests --------------------------------------------------------------------------------
FUZZERS = {"scene": _fuzz_scenes, "ct": _fuzz_ct, "images": _fuzz_images,
           "trace": _fuzz_traces}


@pytest.mark.parametrize("what", sorted(FUZZERS))
def test_fuzz(what, tmp_path, capfd):
    counts = FUZZERS[what](FAST[what], tmp_path, capfd)
    with capfd.disabled():
        print(f"\nfuzz {what}: {sum(counts.values())} cases, {dict(counts)}")


@pytest.mark.slow
@pytest.mark.parametrize("what", sorted(FUZZERS))
def test_fuzz_many(what, tmp_path, capfd):
    counts = FUZZERS[what](SLOW[what], tmp_path, capfd)
    with capfd.disabled():
        print(f"\nfuzz {what} (slow): {sum(counts.values())} cases, {dict(counts)}")
