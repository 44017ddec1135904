"""Shared inputs of the benchmarks: the default phantom and the real CT of ../shared/data."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_CT = Path(__file__).resolve().parents[2] / "shared" / "data" / "ct" / "example_ct.nii.gz"


@pytest.fixture(scope="session")
def default_phantom():
    """The default phantom preset (seed 0): ``.volume``, ``.truth.target_center_ct_mm``."""
    from cyberknife_sim.anatomy import make_phantom

    return make_phantom("default", seed=0)


@pytest.fixture(scope="session")
def real_ct():
    """The real CT of ../shared/data/ct as a Volume (skips when the file is missing)."""
    from cyberknife_sim.anatomy import read_ct

    if not SHARED_CT.exists():
        pytest.skip(f"{SHARED_CT} not found")
    return read_ct(SHARED_CT)


def step_to_beam_on(loop, *, min_s: float = 20.0) -> int:
    """Step a :class:`~cyberknife_sim.simulation.TreatmentLoop` from its start until at least
    ``min_s`` simulated seconds have passed and the beam is on (at a node, no hold); returns
    the next step index."""
    rec, st = loop.rec, loop.state
    i = 0
    while not (rec.time_s[i] >= min_s and st.at_node and not st.holds):
        assert loop.step(i)
        i += 1
    return i


def imaging_event_due(loop, i: int) -> bool:
    """Step ``i`` holds an imaging event: an exposure, or a registration result applied."""
    t = loop.rec.time_s[i]
    pend = loop.state.pending_images
    return loop.exposure_due(t) or bool(pend and pend[0][0] <= t + 1e-9)
