"""Bone patches: one Hadamard-masked, square, native-scale patch per target bone (hand paper, multi-crop §)."""

from monai_osteo.transforms.bone.array import BONE_META_KEYS, BoneRecord, ExtractBonePatches
from monai_osteo.transforms.bone.dictionary import (
    ExtractBonePatchesD,
    ExtractBonePatchesd,
    ExtractBonePatchesDict,
    collate_bone_patches,
)

__all__ = [
    "BONE_META_KEYS", "BoneRecord", "ExtractBonePatches", "ExtractBonePatchesD", "ExtractBonePatchesDict",
    "ExtractBonePatchesd", "collate_bone_patches",
]
