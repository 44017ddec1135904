"""The plastimatch peer sees a CT whose axes run negative or are permuted at the same place
as the plain one (plastimatch ignores direction cosines; the adapter reorders the voxels)."""

from __future__ import annotations

import numpy as np
import pytest

from cyberknife_sim.anatomy import Volume
from cyberknife_sim.errors import CksimError
from cyberknife_sim.geometry import matrix_from_pose
from cyberknife_sim.imaging import DrrRenderer, ViewGeometry, peer

MU_W = 0.02
needs_peer = pytest.mark.skipif(peer.find_plastimatch() is None, reason=peer.NOT_INSTALLED)


def _asymmetric() -> Volume:
    """Water slab with a bone block in one corner: every flip changes the image."""
    hu = np.full((20, 24, 28), -1000, dtype=np.int16)  # [k, j, i]
    hu[4:16, 5:19, 3:25] = 0
    hu[5:9, 6:10, 4:9] = 1500
    a = np.diag([1.0, 1.25, 1.5, 1.0])
    a[:3, 3] = (-20.0, -14.0, -15.0)
    return Volume(hu, a, name="asym")


def _reindexed(vol: Volume, order: tuple[int, int, int], signs: tuple[int, int, int]) -> Volume:
    """The same voxels at the same CT positions, stored with new voxel axes: new axis m is
    old axis ``order[m]`` run in direction ``signs[m]``."""
    hu = vol.hu  # [k, j, i]: voxel axis n is array axis 2 - n
    hu = np.transpose(hu, [2 - order[m] for m in (2, 1, 0)])
    for m, s in enumerate(signs):
        if s < 0:
            hu = np.flip(hu, axis=2 - m)
    old = vol.ct_from_ijk
    a = np.eye(4)
    first = np.zeros(3)
    for m, (n, s) in enumerate(zip(order, signs, strict=True)):
        a[:3, m] = s * old[:3, n]
        if s < 0:
            first[n] = vol.shape[2 - n] - 1
    a[:3, 3] = vol.ijk_to_ct(first)
    return Volume(np.ascontiguousarray(hu), a, name="reindexed")


def _view(n: int = 64) -> ViewGeometry:
    return ViewGeometry("V", np.array([0.0, -1000.0, 0.0]), np.array([0.0, 500.0, 0.0]),
                        np.array([0.0, 0.0, -1.0]), np.array([1.0, 0.0, 0.0]), 1.0, (n, n))


def test_reindexed_volume_is_the_same_object():
    vol = _asymmetric()
    flipped = _reindexed(vol, (0, 1, 2), (1, -1, 1))
    assert np.linalg.det(flipped.ct_from_ijk[:3, :3]) < 0
    pts = np.array([[-3.0, 2.0, 1.0], [5.0, -6.5, 7.25]])
    from scipy.ndimage import map_coordinates

    def sample(v):
        ijk = v.ct_to_ijk(pts)
        return map_coordinates(v.hu.astype(float), ijk[:, ::-1].T, order=1)
    np.testing.assert_allclose(sample(flipped), sample(vol), atol=1e-9)


@pytest.mark.parametrize(("order", "signs"), [((0, 1, 2), (1, -1, 1)),     # second axis negative
                                              ((0, 1, 2), (-1, -1, 1)),    # a RAS NIfTI in LPS
                                              ((1, 0, 2), (1, -1, -1))])   # permuted and flipped
def test_axis_aligned_mu_undoes_flips_and_permutations(order, signs):
    vol = _asymmetric()
    mu0, sp0, org0 = peer.axis_aligned_mu(vol, mu_water_per_mm=MU_W)
    mu1, sp1, org1 = peer.axis_aligned_mu(_reindexed(vol, order, signs), mu_water_per_mm=MU_W)
    np.testing.assert_array_equal(mu1, mu0)
    np.testing.assert_allclose(sp1, sp0)
    np.testing.assert_allclose(org1, org0, atol=1e-9)


@needs_peer
def test_peer_drr_of_a_flipped_ct_equals_the_original(tmp_path):
    vol = _asymmetric()
    flipped = _reindexed(vol, (0, 1, 2), (-1, -1, 1))
    view, pose = _view(), matrix_from_pose([2.0, -1.0, 3.0, 4.0, -3.0, 10.0])
    images = [peer.plastimatch_drr(view, pose, peer.write_mu_mha(
        v, tmp_path / f"{i}.mha", mu_water_per_mm=MU_W)).image for i, v in enumerate((vol,
                                                                                      flipped))]
    assert images[0].max() > 0.5
    np.testing.assert_allclose(images[1], images[0], atol=1e-4)
    # and both agree with our renderer, which reads the direction itself
    ours = DrrRenderer(flipped, view, mu_water_per_mm=MU_W).render_view(pose, 0)
    rel = np.sqrt(np.mean((images[1] - ours) ** 2) / np.mean(ours**2))
    assert rel < 0.05, rel


def test_oblique_ct_is_refused_in_one_line(tmp_path):
    vol = _asymmetric()
    a = matrix_from_pose([0, 0, 0, 0, 0, 30.0]) @ vol.ct_from_ijk
    with pytest.raises(CksimError, match="axes run along the CT frame axes") as err:
        peer.write_mu_mha(Volume(vol.hu, a, name="oblique"), tmp_path / "o.mha",
                          mu_water_per_mm=MU_W)
    assert "\n" not in str(err.value)
