"""The plastimatch peer adapter reproduces our geometry and units (when plastimatch is
installed), and says clearly when it is not."""

from __future__ import annotations

import numpy as np
import pytest

from cyberknife_sim.anatomy import Volume
from cyberknife_sim.geometry import matrix_from_pose
from cyberknife_sim.imaging import DrrRenderer, ViewGeometry, imaging_pair, peer
from cyberknife_sim.scene import ImagingSettings

MU_W = 0.02
HAVE_PEER = peer.find_plastimatch() is not None
needs_peer = pytest.mark.skipif(not HAVE_PEER, reason=peer.NOT_INSTALLED)


def _cube(side_mm: float = 40.0, spacing_mm: float = 1.0) -> Volume:
    """Water cube (HU 0) of ``side_mm`` centred on CT (0, 0, 0), in air, 20 mm margin."""
    n = int(round((side_mm + 40.0) / spacing_mm))
    hu = np.full((n, n, n), -1000, dtype=np.int16)
    lo = int(round(20.0 / spacing_mm))
    hi = lo + int(round(side_mm / spacing_mm))
    hu[lo:hi, lo:hi, lo:hi] = 0
    ct_from_ijk = np.diag([spacing_mm] * 3 + [1.0])
    ct_from_ijk[:3, 3] = -(n - 1) / 2.0 * spacing_mm
    return Volume(hu, ct_from_ijk, name="cube")


def _vertical_view(n: int = 128, spacing_mm: float = 1.0) -> ViewGeometry:
    """Source on the ceiling (room −y) at 1000 mm, detector 500 mm beyond the origin."""
    return ViewGeometry("V", np.array([0.0, -1000.0, 0.0]), np.array([0.0, 500.0, 0.0]),
                        np.array([0.0, 0.0, -1.0]), np.array([1.0, 0.0, 0.0]), spacing_mm,
                        (n, n))


@pytest.fixture(scope="module")
def cube_mha(tmp_path_factory):
    vol = _cube()
    return vol, peer.write_mu_mha(vol, tmp_path_factory.mktemp("peer") / "cube.mha",
                                  mu_water_per_mm=MU_W)


@needs_peer
def test_uniform_cube_central_chord(cube_mha):
    """Central pixel = μ × analytic chord: face-on (40 mm), and with the cube turned 45°
    about z and shifted 5 mm along x (chord 2·(20√2 − 5) mm), which tests the frame chain."""
    vol, path = cube_mha
    view = _vertical_view()
    c = view.shape[0] // 2
    # even detector: the central ray hits the corner of the four middle pixels; average them
    img = peer.plastimatch_drr(view, np.eye(4), path).image
    center = img[c - 1:c + 1, c - 1:c + 1].mean()
    assert center == pytest.approx(MU_W * 40.0, rel=0.01)
    pose = matrix_from_pose([5.0, 0.0, 0.0, 0.0, 0.0, 45.0])
    img = peer.plastimatch_drr(view, pose, path).image
    chord = 2 * (20.0 * np.sqrt(2.0) - 5.0)
    assert img[c - 1:c + 1, c - 1:c + 1].mean() == pytest.approx(MU_W * chord, rel=0.03)


@needs_peer
@pytest.mark.parametrize("view_index", [0, 1])
def test_matches_our_renderer_on_the_default_pair(cube_mha, view_index):
    """Same cube, the default oblique views at 128², a 6-DoF pose: the two images agree
    (relative RMS < 3 %; edges differ: plastimatch's exact voxel chords vs our trilinear
    Joseph sampling) and the silhouettes coincide (centroids within 0.25 px)."""
    vol, path = cube_mha
    view = imaging_pair(ImagingSettings(), binning=8)[view_index]
    room_from_ct = matrix_from_pose([3.0, -2.0, 4.0, 5.0, -4.0, 10.0])
    ours = DrrRenderer(vol, view, mu_water_per_mm=MU_W).render_view(room_from_ct, 0)
    theirs = peer.plastimatch_drr(view, room_from_ct, path).image
    rel = np.sqrt(np.mean((theirs - ours) ** 2) / np.mean(ours**2))
    assert rel < 0.03, f"relative RMS difference {rel:.4f}"
    rr, cc = np.mgrid[: view.shape[0], : view.shape[1]]
    for a in (ours, theirs):
        assert a.sum() > 0
    cen = [np.array([(a * rr).sum(), (a * cc).sum()]) / a.sum() for a in (ours, theirs)]
    np.testing.assert_allclose(cen[0], cen[1], atol=0.25)


def test_reports_clearly_when_not_installed(monkeypatch, cube_mha):
    monkeypatch.setattr(peer, "find_plastimatch", lambda: None)
    _, path = cube_mha
    with pytest.raises(peer.PeerNotInstalled, match="plastimatch not installed"):
        peer.plastimatch_drr(_vertical_view(), np.eye(4), path)
    with pytest.raises(peer.PeerNotInstalled, match="pip install plastimatch"):
        peer.plastimatch_version()


def test_rejects_non_square_detector_and_unknown_algorithm(tmp_path):
    view = ViewGeometry("V", np.array([0.0, -1000.0, 0.0]), np.array([0.0, 500.0, 0.0]),
                        np.array([0.0, 0.0, -1.0]), np.array([1.0, 0.0, 0.0]), 1.0, (64, 96))
    with pytest.raises(ValueError, match="square detector"):
        peer.plastimatch_command(view, np.eye(4), tmp_path / "v.mha", tmp_path / "o")
    with pytest.raises(ValueError, match="exact, uniform"):
        peer.plastimatch_command(_vertical_view(), np.eye(4), tmp_path / "v.mha",
                                 tmp_path / "o", algorithm="siddon")


def test_command_places_source_and_detector_like_our_view(tmp_path):
    """The isocenter, normal and vup passed to plastimatch reproduce our source position and
    detector plane in the CT frame (pure geometry, no plastimatch needed)."""
    view = imaging_pair(ImagingSettings(), binning=4)[1]
    room_from_ct = matrix_from_pose([10.0, -5.0, 2.0, 3.0, 2.0, -8.0])
    cmd = peer.plastimatch_command(view, room_from_ct, tmp_path / "v.mha", tmp_path / "o")
    arg = {cmd[i]: cmd[i + 1] for i in range(1, len(cmd) - 1) if cmd[i].startswith("-")}
    iso = np.array(arg["-o"].split(), float)
    nrm = np.array(arg["-n"].split(), float)
    sad, sid = float(arg["--sad"]), float(arg["--sid"])
    ct_from_room = np.linalg.inv(room_from_ct)
    src_ct = ct_from_room[:3, :3] @ view.source_room + ct_from_room[:3, 3]
    det_ct = ct_from_room[:3, :3] @ view.detector_center_room + ct_from_room[:3, 3]
    np.testing.assert_allclose(iso + sad * nrm, src_ct, atol=1e-5)
    np.testing.assert_allclose(src_ct - sid * nrm, det_ct, atol=1e-5)
    assert arg["-r"] == "256 256" and arg["-P"] == "none"
