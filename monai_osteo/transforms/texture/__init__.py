"""GLCM texture maps exact against pyradiomics' voxel-based mode, and the TP-SwAV texture pool (§2.1, Fig. 1C)
and its SSL views (pool members; random 3-D crops for the crop-SwAV baseline)."""

from monai_osteo.transforms.texture.array import NORMALIZE_MODES, GLCMTextureMap, TexturePool
from monai_osteo.transforms.texture.dictionary import (
    GLCMTextureMapD,
    GLCMTextureMapd,
    GLCMTextureMapDict,
    TexturePoolD,
    TexturePoold,
    TexturePoolDict,
)
from monai_osteo.transforms.texture.functional import (
    GLCM_FEATURES,
    TP_SWAV_FEATURES,
    bin_edges,
    discretise,
    glcm_directions,
    glcm_feature_maps,
    glcm_texture_maps,
    window_sum,
)
from monai_osteo.transforms.texture.views import (
    RandCropViews3DD,
    RandCropViews3Dd,
    RandCropViews3DDict,
    RandTexturePoolViewsD,
    RandTexturePoolViewsd,
    RandTexturePoolViewsDict,
)

__all__ = [
    "GLCM_FEATURES", "NORMALIZE_MODES", "TP_SWAV_FEATURES",
    "GLCMTextureMap", "GLCMTextureMapD", "GLCMTextureMapDict", "GLCMTextureMapd",
    "TexturePool", "TexturePoolD", "TexturePoolDict", "TexturePoold",
    "RandCropViews3DD", "RandCropViews3DDict", "RandCropViews3Dd",
    "RandTexturePoolViewsD", "RandTexturePoolViewsDict", "RandTexturePoolViewsd",
    "bin_edges", "discretise", "glcm_directions", "glcm_feature_maps", "glcm_texture_maps", "window_sum",
]
