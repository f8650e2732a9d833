"""Latent bone biology, CT protocol and DXA measurement of the phantom vertebral-CT cohort.

Per patient: site, sex, age, body size, trabecular volumetric BMD (vBMD, mg/cm³) that peaks in young adults
and falls with age (faster after menopause), marrow fat fraction (rises with age and low BMD; lowers CT
numbers independently of mineral, the known QCT confounder), cortical-shell thickness, and per level a
correlated vBMD (shared patient term + level factor + log-normal scatter) and degenerative osteophytes that
raise DXA but not trabecular density. DXA areal BMD of L1–L4 is measured by the site's device (Hologic,
GE Lunar, MEDIX-like) with device-specific gain/offset and 1.2 % precision, and converted to a T-score with
that device's young-adult reference: the same bone near −2.5 is labelled differently by different devices
(the bias the paper's device-expert MoE absorbs). Every number is a phantom parameter of vendor-like
magnitude, not a clinical calibration (anchors: ACR QCT 80/120 mg/cm³; Genant et al. 1994 spine
cross-calibration, Hologic ≈ 0.906·Lunar − 0.025).

Switches for controls: ``device_bias_scale`` (0 = every device reads and references like Hologic),
``texture_signal`` (0 = BMD changes only the mean density, the microarchitecture is that of an average
patient; read by the renderer), ``marrow_fat_confound`` (0 = every patient has the cohort's mean fat fraction).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from monai_osteo.data.phantoms.vertebra.levels import LEVELS, LUMBAR_DXA_LEVELS, body_size_mm

__all__ = [
    "DEVICES",
    "SITES",
    "T_SCORE_THRESHOLD",
    "Patient",
    "VertebraTruth",
    "dxa_reading",
    "sample_patient",
]

T_SCORE_THRESHOLD = -2.5
#: DXA devices: gain/offset of the reading vs the Hologic-scale true aBMD, and the young-adult L1–L4 reference
DEVICES = {
    "Hologic": {"index": 0, "gain": 1.0, "offset": 0.0, "ref_mean": 1.047, "ref_sd": 0.110},
    "GE Lunar": {"index": 1, "gain": 1.104, "offset": 0.028, "ref_mean": 1.130, "ref_sd": 0.120},
    "MEDIX": {"index": 2, "gain": 0.95, "offset": 0.03, "ref_mean": 1.140, "ref_sd": 0.120},
}
#: young Hologic-scale aBMD per DXA level (L1 < L2 < L3 ~ L4)
_YOUNG_ABMD = {"L1": 0.94, "L2": 1.03, "L3": 1.07, "L4": 1.08}
#: CT protocols: the visible levels (first, last), before a random +-1 truncation at each end
PROTOCOLS = {"chest": ("T1", "L2"), "abdomen": ("T10", "L5"), "chest_abdomen": ("T1", "L5")}
#: CT vendors: HU gain and offset means (the image-domain shift)
VENDORS = {"Siemens": (0.0, 0.0), "GE": (0.02, -6.0), "Philips": (-0.02, 8.0)}
#: sites as the paper's Table 1 (device per site; D is external, test only). Age/sex mixes, protocol mixes and
#: the per-vertebra DXA exclusion rate are phantom parameters chosen so that prevalence and labelled
#: vertebrae per patient land near the rates derived from the paper's tables (see the honesty tests).
SITES = {
    "A": {"device": "Hologic", "female": 0.75, "age": (72.0, 9.0), "exclusion": 0.20,
          "protocols": {"chest": 0.6, "abdomen": 0.25, "chest_abdomen": 0.15},
          "vendors": {"Siemens": 0.5, "GE": 0.3, "Philips": 0.2}, "slices": (1.0, 1.25, 2.0)},
    "B": {"device": "GE Lunar", "female": 0.65, "age": (65.0, 9.0), "exclusion": 0.35,
          "protocols": {"chest": 0.7, "abdomen": 0.2, "chest_abdomen": 0.1},
          "vendors": {"Siemens": 0.2, "GE": 0.6, "Philips": 0.2}, "slices": (1.25, 2.0, 3.0)},
    "C": {"device": "MEDIX", "female": 0.40, "age": (46.0, 8.0), "exclusion": 0.05,
          "protocols": {"chest": 0.05, "abdomen": 0.6, "chest_abdomen": 0.35},
          "vendors": {"Siemens": 0.2, "GE": 0.2, "Philips": 0.6}, "slices": (1.0, 2.0, 3.0)},
    "D": {"device": "Hologic", "female": 0.72, "age": (70.0, 9.0), "exclusion": 0.48,
          "protocols": {"chest": 0.8, "abdomen": 0.1, "chest_abdomen": 0.1},
          "vendors": {"Siemens": 0.2, "GE": 0.2, "Philips": 0.6}, "slices": (1.25, 2.0, 3.0)},
}
_MEAN_FAT = 0.5  # cohort-mean marrow fat fraction, used when marrow_fat_confound = 0
_REF_VBMD = 130.0  # vBMD whose microarchitecture every vertebra gets when texture_signal = 0


@dataclass
class VertebraTruth:
    """Latent truth of one vertebra (what the renderer draws and the DXA measures)."""

    level: str
    vbmd: float  # trabecular vBMD, mg/cm^3
    texture_vbmd: float  # vBMD that sets the microarchitecture (= vbmd when texture_signal = 1)
    fat_fraction: float
    cortical_mm: float
    size: np.ndarray  # width, depth, height (mm)
    osteophyte: bool = False
    osteophyte_abmd: float = 0.0
    dxa: dict = field(default_factory=dict)  # bmd, t_score, label, abmd_bone, abmd_true, excluded

    def to_dict(self) -> dict:
        d = asdict(self)
        d["size"] = [round(float(s), 3) for s in self.size]
        return d


@dataclass
class Patient:
    """One phantom patient: demographics, scan and its visible vertebrae (cranial to caudal)."""

    patient_id: str
    site: str
    device: str
    sex: str
    age: int
    size_factor: float
    protocol: str
    vendor: str
    hu_gain: float
    hu_offset: float
    inplane_mm: float
    slice_mm: float
    psf_mm: float
    noise_hu: float
    vertebrae: list[VertebraTruth]


def _choice(rng: np.random.Generator, probs: dict) -> str:
    keys = list(probs)
    p = np.asarray([probs[k] for k in keys], dtype=float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _levels(rng: np.random.Generator, protocol: str, lumbar6: bool) -> list[str]:
    first, last = PROTOCOLS[protocol]
    if last == "L5" and lumbar6:
        last = "L6"
    i, j = LEVELS.index(first), LEVELS.index(last)
    i = int(np.clip(i + rng.integers(-1, 2), 0, j))  # field of view varies by about one level at each end
    j = int(np.clip(j + rng.integers(-1, 2), i, LEVELS.index("L6" if lumbar6 else "L5")))
    return list(LEVELS[i: j + 1])


def dxa_reading(abmd_true: float, device: str, level: str, rng: np.random.Generator, bias_scale: float = 1.0,
                precision_cv: float = 0.012) -> tuple[float, float]:
    """Device reading (g/cm²) of a Hologic-scale true aBMD and its T-score against the device's reference.

    ``bias_scale`` interpolates the device's gain, offset and reference towards Hologic's (0 = Hologic).
    """
    d, h = DEVICES[device], DEVICES["Hologic"]

    def mix(k):
        return h[k] + bias_scale * (d[k] - h[k])

    bmd = (mix("gain") * abmd_true + mix("offset")) * (1.0 + precision_cv * rng.normal())
    scale = _YOUNG_ABMD[level] / float(np.mean(list(_YOUNG_ABMD.values())))
    t = (bmd - mix("ref_mean") * scale) / (mix("ref_sd") * scale)
    return float(bmd), float(t)


def sample_patient(rng: np.random.Generator, patient_id: str, site: str, device_bias_scale: float = 1.0,
                   texture_signal: float = 1.0, marrow_fat_confound: float = 1.0,
                   inplane_mm: tuple[float, float] = (0.6, 0.9), slices: tuple[float, ...] | None = None,
                   protocols: dict | None = None, exclusion: float | None = None) -> Patient:
    """Draw one patient of ``site`` ("A"–"D") with its visible vertebrae and DXA of L1–L4.

    Args:
        rng: the patient's own random stream.
        patient_id: identifier written in the records.
        site: one of ``SITES``.
        device_bias_scale, texture_signal, marrow_fat_confound: the control switches (module docstring), in [0, 1].
        inplane_mm: range of the CT's in-plane pixel size.
        slices: slice thicknesses to draw from (default: the site's).
        protocols: ``{protocol: probability}`` overriding the site's mix of chest / abdomen / chest_abdomen.
        exclusion: per-vertebra DXA exclusion rate overriding the site's (fracture, artefact, failed ID).
    """
    for name, v in (("device_bias_scale", device_bias_scale), ("texture_signal", texture_signal),
                    ("marrow_fat_confound", marrow_fat_confound)):
        if not 0.0 <= float(v) <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {v!r}.")
    if site not in SITES:
        raise ValueError(f"site must be one of {sorted(SITES)}, got {site!r}.")
    s = SITES[site]
    female = rng.random() < s["female"]
    age = int(np.clip(round(rng.normal(*s["age"])), 45, 90))
    size = (0.95 if female else 1.07) * float(np.clip(rng.normal(1.0, 0.05), 0.85, 1.15))
    peak = 180.0 if female else 185.0
    loss = (1.3 * (age - 40) + (1.8 * np.clip(age - 50, 0, 12) if female else 0.0)) if age > 40 else 0.0
    vbmd_patient = float(np.clip(peak - loss + rng.normal(0.0, 24.0), 25.0, 280.0))
    fat = float(np.clip(0.30 + 0.006 * (age - 40) + 0.0015 * (140.0 - vbmd_patient) + rng.normal(0, 0.11),
                        0.1, 0.9))
    fat = _MEAN_FAT + marrow_fat_confound * (fat - _MEAN_FAT)
    cortical = float(np.clip(rng.normal(0.85 - 0.006 * (age - 40), 0.12), 0.3, 1.0))
    protocol = _choice(rng, protocols or s["protocols"])
    levels = _levels(rng, protocol, lumbar6=rng.random() < 0.05)
    vendor = _choice(rng, s["vendors"])
    g0, o0 = VENDORS[vendor]
    exclusion = s["exclusion"] if exclusion is None else float(exclusion)
    p_osteo = 0.05 + 0.25 * float(np.clip((age - 50) / 30.0, 0.0, 1.0))
    dxa_accuracy = float(np.exp(rng.normal(0.0, 0.05)))
    vertebrae = []
    for level in levels:
        pos = LEVELS.index(level)
        level_factor = 1.10 - 0.08 * min(pos, 11) / 11 if level.startswith("T") else 1.0 - 0.01 * (pos - 12)
        vbmd = float(np.clip(vbmd_patient * level_factor * np.exp(rng.normal(0.0, 0.06)), 15.0, 320.0))
        geometry = _size(level, size, rng)
        v = VertebraTruth(level=level, vbmd=vbmd,
                          texture_vbmd=_REF_VBMD + texture_signal * (vbmd - _REF_VBMD),
                          fat_fraction=float(np.clip(fat + marrow_fat_confound * rng.normal(0, 0.03), 0.05, 0.95)),
                          cortical_mm=float(np.clip(cortical + rng.normal(0, 0.05), 0.3, 1.0)), size=geometry)
        if level in LUMBAR_DXA_LEVELS:
            level_risk = {"L1": 0.7, "L2": 0.9, "L3": 1.2, "L4": 1.3}[level]
            v.osteophyte = bool(rng.random() < p_osteo * level_risk)
            v.osteophyte_abmd = float(rng.uniform(0.05, 0.25)) if v.osteophyte else 0.0
            # Hologic-scale true aBMD: trabecular share (vBMD), cortical shell, bone size (depth), posterior elements
            # and a projection/soft-tissue accuracy error (shared by the patient's levels) that CT does not see
            bone = _YOUNG_ABMD[level] * (0.45 * v.vbmd / 182.0 + 0.35 * v.cortical_mm / 0.85 + 0.20) \
                * (geometry[1] / float(body_size_mm(level)[1])) ** 0.7 * dxa_accuracy
            true = bone + v.osteophyte_abmd
            bmd, t = dxa_reading(true, s["device"], level, rng, device_bias_scale)
            v.dxa = {"abmd_bone": bone, "abmd_true": true, "bmd": bmd, "t_score": t,
                     "label": int(t <= T_SCORE_THRESHOLD), "excluded": bool(rng.random() < exclusion)}
        vertebrae.append(v)
    dxa = [v for v in vertebrae if v.dxa]
    if dxa and all(v.dxa["excluded"] for v in dxa):  # a patient in the cohort has at least one DXA-paired vertebra
        dxa[int(rng.integers(len(dxa)))].dxa["excluded"] = False
    slice_mm = float(rng.choice(slices or s["slices"]))
    return Patient(patient_id=patient_id, site=site, device=s["device"], sex="F" if female else "M", age=age,
                   size_factor=size, protocol=protocol, vendor=vendor,
                   hu_gain=float(1.0 + g0 + rng.normal(0, 0.02)), hu_offset=float(o0 + rng.normal(0, 12.0)),
                   inplane_mm=float(rng.uniform(*inplane_mm)), slice_mm=slice_mm,
                   psf_mm=float(rng.uniform(0.3, 0.8)),
                   noise_hu=float(np.clip(12.0 + 14.0 * (size - 0.9) / 0.3 + rng.normal(0, 4.0), 12.0, 35.0)),
                   vertebrae=vertebrae)


def _size(level: str, size: float, rng: np.random.Generator) -> np.ndarray:
    return body_size_mm(level) * size * np.exp(rng.normal(0.0, 0.05, size=3))
