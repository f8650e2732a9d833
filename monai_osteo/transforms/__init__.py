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
from monai_osteo.transforms.channels import EnsureChannels, EnsureChannelsd
from monai_osteo.transforms.features import FrozenFeatures, FrozenFeaturesd
from monai_osteo.transforms.letterbox import (
    CropLetterbox,
    CropLetterboxd,
    Letterbox,
    LetterboxD,
    Letterboxd,
    LetterboxDict,
    letterbox_padding,
    letterbox_window,
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
from monai_osteo.transforms.texture import (
    GLCM_FEATURES,
    NORMALIZE_MODES,
    TP_SWAV_FEATURES,
    GLCMTextureMap,
    GLCMTextureMapD,
    GLCMTextureMapd,
    GLCMTextureMapDict,
    TexturePool,
    TexturePoolD,
    TexturePoold,
    TexturePoolDict,
)

__all__ = [
    "EnsureChannels",
    "EnsureChannelsd",
    "FrozenFeatures",
    "FrozenFeaturesd",
    "CropLetterbox",
    "CropLetterboxd",
    "Letterbox",
    "LetterboxD",
    "LetterboxDict",
    "Letterboxd",
    "letterbox_padding",
    "letterbox_window",
    "BONE_META_KEYS",
    "GLCM_FEATURES",
    "NORMALIZE_MODES",
    "TP_SWAV_FEATURES",
    "GLCMTextureMap",
    "GLCMTextureMapD",
    "GLCMTextureMapDict",
    "GLCMTextureMapd",
    "TexturePool",
    "TexturePoolD",
    "TexturePoolDict",
    "TexturePoold",
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
