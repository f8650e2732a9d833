"""The label convention is a dependency-free leaf module, shared by every module and both bundles' metadata."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from monai_osteo.data.labels import BONE_LABELS, BONES, CHANNEL_DEF

ROOT = Path(__file__).resolve().parents[2]


def test_convention_values():
    assert BONES == ("ulna", "radius", "M1", "M2", "M3", "M4", "M5")
    assert [BONE_LABELS[b] for b in BONES] == list(range(1, 8))
    assert CHANNEL_DEF == {"0": "background", **{str(i + 1): b for i, b in enumerate(BONES)}}


def test_labels_module_imports_nothing_but_future():
    tree = ast.parse((ROOT / "monai_osteo" / "data" / "labels.py").read_text())
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert all(isinstance(n, ast.ImportFrom) and n.module == "__future__" for n in imports)


def test_transforms_do_not_import_the_phantom_generators():
    code = ("import sys, monai_osteo.transforms, monai_osteo.metrics, monai_osteo.report; "
            "print('monai_osteo.data.phantoms' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


def test_segmentation_bundle_channel_def_is_the_convention():
    meta = json.loads((ROOT / "bundles/hand_bone_segmentation/configs/metadata.json").read_text())
    assert meta["network_data_format"]["outputs"]["pred"]["channel_def"] == CHANNEL_DEF


def test_one_atomic_write_implementation():
    """Files are renamed into place in monai_osteo/io.py only (checkpoints: ignite's atomic DiskSaver)."""
    offenders = []
    for path in (ROOT / "monai_osteo").rglob("*.py"):
        if path.name == "io.py" and path.parent.name == "monai_osteo":
            continue
        text = path.read_text()
        if "os.replace(" in text or "mkstemp(" in text or "NamedTemporaryFile(" in text:
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
