"""ExtractVertebraROI[d] and its functional form on analytic volumes (rotated boxes must come back
axis-aligned), against a scipy ``map_coordinates`` oracle of the resampling, on a rendered phantom CT
(estimated axes and centres vs the renderer's truth), and its reports and errors."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from scipy import ndimage
from scipy.spatial.transform import Rotation

from monai_osteo.transforms.vertebra import (
    ExtractVertebraROI,
    ExtractVertebraROId,
    VertebraROIError,
    roi_affine,
    vertebra_geometries,
)
from tests.utils import assert_allclose

SPACING = (0.8, 0.8, 2.0)


def _volume(shape=(96, 96, 48), spacing=SPACING):
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = [-40.0, -30.0, -50.0]
    return affine, shape


def _world(shape, affine):
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).reshape(-1, 3)
    return idx @ affine[:3, :3].T + affine[:3, 3]


def _box(rot: np.ndarray, centre, dims, shape=(96, 96, 48), spacing=SPACING, label=20, rod_mm=0.0):
    """CT (HU = 150 + 3 HU per mm along the box's width axis) and label map of a rotated box (+ optional rod)."""
    affine, shape = _volume(shape, spacing)
    local = (_world(shape, affine) - np.asarray(centre)) @ rot  # coordinates along the box's own axes
    inside = np.all(np.abs(local) <= np.asarray(dims) / 2, axis=1)
    if rod_mm:  # a posterior-element-like rod behind the box (thinner than the opening's diameter)
        rod = (np.hypot(local[:, 0], local[:, 2]) < rod_mm / 2) & (local[:, 1] < -dims[1] / 2) & (
            local[:, 1] > -dims[1] / 2 - 40)
        inside |= rod
    hu = np.where(inside, 150.0 + 3.0 * local[:, 0], -80.0).reshape(shape).astype(np.float32)
    lab = np.where(inside, label, 0).reshape(shape).astype(np.int16)
    return hu, lab, affine


def _angle(a, b):
    return float(np.degrees(np.arccos(np.clip(abs(a @ b), -1, 1))))


@pytest.mark.parametrize("euler", [(0, 0, 0), (20, 0, 0), (-15, 10, 5), (25, -8, -12)])
@pytest.mark.parametrize("dims", [(40.0, 28.0, 22.0), (36.0, 26.0, 26.0)])  # depth == height: PCA cannot tell
def test_rotated_box_comes_back_axis_aligned(euler, dims):
    rot = Rotation.from_euler("xyz", euler, degrees=True).as_matrix()
    hu, lab, affine = _box(rot, (1.5, 4.0, -2.0), dims)
    (geo,) = vertebra_geometries(lab, affine, body_opening_mm=0)
    for i in range(3):
        assert _angle(geo.axes[:, i], rot[:, i]) < 2.0, (i, geo.axes, rot)
    assert_allclose(geo.centre, (1.5, 4.0, -2.0), atol=0.5)
    roi, mask = ExtractVertebraROI(roi_size=(48, 40, 32), roi_spacing=1.0, body_opening_mm=0)(
        MetaTensor(torch.as_tensor(hu)[None], affine=torch.as_tensor(affine)), lab, level="L1")
    m = mask[0].numpy().astype(bool)
    extent = [np.ptp(np.nonzero(m.any(axis=tuple(j for j in range(3) if j != i)))[0]) + 1 for i in range(3)]
    assert_allclose(extent, dims, atol=2.5)  # axis-aligned: the box's extents along the ROI's axes
    # the HU ramp runs along the ROI's first axis, increasing (sign of the width axis kept)
    prof = [roi[0].numpy()[i][m[i]].mean() for i in range(48) if m[i].any()][2:-2]  # off the partial-volume faces
    assert np.all(np.diff(prof) > 0) and np.mean(np.diff(prof)) == pytest.approx(3.0, rel=0.2)
    assert roi.meta["level"] == "L1" and roi.meta["position"] == 13 and roi.meta["label_value"] == 20


def test_resampling_matches_a_map_coordinates_oracle():
    rot = Rotation.from_euler("xyz", (18, -7, 4), degrees=True).as_matrix()
    hu, lab, affine = _box(rot, (0.0, 0.0, 0.0), (40.0, 28.0, 22.0))
    hu = hu + np.random.default_rng(0).normal(0, 20, hu.shape).astype(np.float32)
    t = ExtractVertebraROI(roi_size=(24, 20, 16), roi_spacing=(1.5, 1.5, 1.5), body_opening_mm=0, anti_aliasing=False)
    roi, _ = t(MetaTensor(torch.as_tensor(hu)[None], affine=torch.as_tensor(affine)), lab, level=20)
    dst = roi.meta["affine"].numpy()
    (geo,) = vertebra_geometries(lab, affine, body_opening_mm=0)
    assert_allclose(dst, roi_affine(geo.centre, geo.axes, (24, 20, 16), (1.5,) * 3), atol=1e-9)
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in (24, 20, 16)], indexing="ij"), 0).reshape(3, -1)
    vox = np.linalg.solve(affine[:3, :3], dst[:3, :3] @ idx + dst[:3, 3:4] - affine[:3, 3:4])
    ref = ndimage.map_coordinates(hu, vox, order=1, mode="constant", cval=-1024.0).reshape(24, 20, 16)
    inside = np.all((vox >= 0) & (vox <= np.array(hu.shape)[:, None] - 1), axis=0).reshape(24, 20, 16)
    assert inside.mean() > 0.9
    assert_allclose(roi[0].numpy()[inside], ref[inside], atol=2e-3)
    # ROI centre voxel sits on the body's centroid
    assert_allclose(dst[:3, :3] @ ((np.array([24, 20, 16]) - 1) / 2) + dst[:3, 3], geo.centre, atol=1e-9)


def test_outside_the_volume_is_air():
    hu, lab, affine = _box(np.eye(3), (0.0, 0.0, 0.0), (30.0, 24.0, 20.0))
    roi, _ = ExtractVertebraROI(roi_size=(16, 16, 80), roi_spacing=2.0, body_opening_mm=0)(
        MetaTensor(torch.as_tensor(hu)[None], affine=torch.as_tensor(affine)), lab, level="L1")
    assert float(roi[0, 8, 8, 0]) == pytest.approx(-1024.0) and float(roi[0, 8, 8, -1]) == pytest.approx(-1024.0)


def test_posterior_elements_are_removed_from_the_body():
    hu, lab, affine = _box(np.eye(3), (0.0, 15.0, 0.0), (40.0, 28.0, 22.0), rod_mm=8.0)
    (with_rod,) = vertebra_geometries(lab, affine, body_opening_mm=0)
    (body,) = vertebra_geometries(lab, affine, body_opening_mm=5.0)
    assert with_rod.centre[1] < 14.0  # the rod pulls the whole-label centroid backwards
    assert_allclose(body.centre, (0.0, 15.0, 0.0), atol=0.4)
    assert body.body_volume_mm3 == pytest.approx(40 * 28 * 22, rel=0.08)


def test_phantom_vertebrae_axes_and_centres_match_the_renderer():
    from monai_osteo.data.phantoms.vertebra import render_patient, sample_patient

    rng = np.random.default_rng(3)
    p = sample_patient(rng, "P", "C", inplane_mm=(1.0, 1.0), slices=(2.0,), protocols={"abdomen": 1.0})
    ct = render_patient(p, rng, fine_mm=0.6)
    geos = {g.label: g for g in vertebra_geometries(ct.labels, ct.affine)}
    from monai_osteo.data.phantoms.vertebra import VERSE_LABELS

    assert len(ct.vertebrae) >= 6
    for truth in ct.vertebrae:
        g = geos[VERSE_LABELS[truth["level"]]]
        axes = np.asarray(truth["axes"])
        assert _angle(g.axes[:, 2], axes[:, 2]) < 4.0, truth["level"]
        assert _angle(g.axes[:, 0], axes[:, 0]) < 6.0, truth["level"]
        # the body centroid: the renderer's centre moved by the posterior concavity (kidney shape)
        assert np.linalg.norm(g.centre - np.asarray(truth["centre_mm"])) < 2.5, truth["level"]


def test_cut_and_small_vertebrae_are_reported(caplog):
    rot = np.eye(3)
    hu, lab, affine = _box(rot, (0.0, 0.0, -44.0), (40.0, 28.0, 22.0), label=21)  # runs out of the bottom slice
    small = _box(rot, (0.0, 0.0, 20.0), (10.0, 10.0, 8.0), label=22)
    lab = np.maximum(lab, small[1])
    hu = np.maximum(hu, small[0])
    img = MetaTensor(torch.as_tensor(hu)[None], affine=torch.as_tensor(affine), meta={"filename_or_obj": "ct.nii.gz"})
    with caplog.at_level(logging.WARNING):
        assert ExtractVertebraROI(16, 2.0, body_opening_mm=0)(img, lab) == []
    assert "ct.nii.gz" in caplog.text and "L2: cut by the field of view" in caplog.text
    assert "L3: too small" in caplog.text
    kept = ExtractVertebraROI(16, 2.0, body_opening_mm=0, keep_problematic=True)(img, lab)
    assert [r.meta["level"] for r, _ in kept] == ["L2", "L3"]
    assert kept[0][0].meta["problems"] == ["cut by the field of view"]
    with pytest.raises(VertebraROIError, match=r"ct.nii.gz: vertebra L2 is unusable: cut by the field of view"):
        ExtractVertebraROI(16, 2.0, body_opening_mm=0)(img, lab, level="L2")
    with pytest.raises(VertebraROIError, match=r"vertebra L4 \(label 23\) is not in its label map"):
        ExtractVertebraROI(16, 2.0)(img, lab, level="L4")


def test_bad_inputs_name_the_file_and_the_fix():
    hu, lab, affine = _box(np.eye(3), (0.0, 0.0, 0.0), (30.0, 24.0, 20.0))
    img = MetaTensor(torch.as_tensor(hu)[None], affine=torch.as_tensor(affine), meta={"filename_or_obj": "a.nii"})
    with pytest.raises(VertebraROIError, match=r"a.nii: the label map's shape .*ResampleToMatch"):
        ExtractVertebraROI()(img, lab[:-1])
    with pytest.raises(VertebraROIError, match=r"non-integer .* mode='nearest'"):
        ExtractVertebraROI()(img, lab * 1.01)
    with pytest.raises(ValueError, match="level 'L9' is not in the label convention"):
        ExtractVertebraROI(levels=["L9"])
    with pytest.raises(ValueError, match="MetaTensor"):
        ExtractVertebraROI()(torch.as_tensor(hu), lab)


def test_dict_matches_array_and_carries_the_record():
    rot = Rotation.from_euler("xyz", (10, 0, 0), degrees=True).as_matrix()
    hu, lab, affine = _box(rot, (0.0, 0.0, -15.0), (40.0, 28.0, 20.0), label=20)
    hu2, lab2, _ = _box(rot, (0.0, 0.0, 15.0), (42.0, 28.0, 20.0), label=19)
    hu, lab = np.maximum(hu, hu2), np.maximum(lab, lab2)
    img = MetaTensor(torch.as_tensor(hu)[None], affine=torch.as_tensor(affine))
    data = {"image": img, "shifted": img + 1024.0, "vertebrae": MetaTensor(torch.as_tensor(lab)[None].float()),
            "patient_id": "P1", "level": "L1", "label": 1}
    t = ExtractVertebraROId(keys=("image", "shifted"), label_key="vertebrae", roi_size=16, roi_spacing=2.0)
    one = t(data)
    roi, mask = ExtractVertebraROI(16, 2.0)(img, lab, level="L1")
    assert_allclose(one["image"], roi)
    assert_allclose(one["mask"], mask)
    assert "vertebrae" not in one and one["patient_id"] == "P1" and one["label"] == 1 and one["position"] == 13
    inside = one["image"][0] > -1000
    assert_allclose(one["shifted"][0][inside], one["image"][0][inside] + 1024.0, atol=1e-3)
    many = t({k: v for k, v in data.items() if k != "level"})
    assert [d["level"] for d in many] == ["T12", "L1"] and [d["position"] for d in many] == [12, 13]
    assert_allclose(many[1]["image"], roi)
