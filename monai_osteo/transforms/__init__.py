"""MONAI transform families of monai_osteo (array class, dictionary twin, functional maths) and presets."""

from monai_osteo.transforms.bone import (
    BONE_META_KEYS,
    BoneRecord,
    ExtractBonePatches,
    ExtractBonePatchesD,
    ExtractBonePatchesd,
    ExtractBonePatchesDict,
    collate_bone_patches,
)
from monai_osteo.transforms.multicrop import (
    RandConstrainedMultiCrop,
    RandConstrainedMultiCropD,
    RandConstrainedMultiCropd,
    RandConstrainedMultiCropDict,
)
from monai_osteo.transforms.otsu import (
    PSEUDO_MASK_METHODS,
    OtsuPseudoMask,
    OtsuPseudoMaskD,
    OtsuPseudoMaskd,
    OtsuPseudoMaskDict,
)
from monai_osteo.transforms.presets import hand_view_augmentation, hand_view_augmentationd

__all__ = [
    "BONE_META_KEYS",
    "PSEUDO_MASK_METHODS",
    "BoneRecord",
    "ExtractBonePatches",
    "ExtractBonePatchesD",
    "ExtractBonePatchesDict",
    "ExtractBonePatchesd",
    "OtsuPseudoMask",
    "OtsuPseudoMaskD",
    "OtsuPseudoMaskDict",
    "OtsuPseudoMaskd",
    "RandConstrainedMultiCrop",
    "RandConstrainedMultiCropD",
    "RandConstrainedMultiCropDict",
    "RandConstrainedMultiCropd",
    "collate_bone_patches",
    "hand_view_augmentation",
    "hand_view_augmentationd",
]
