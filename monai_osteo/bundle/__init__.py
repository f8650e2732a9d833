"""The thin helpers bundle configs call: locate a bundle, resolve a datalist, list inputs, chain stage configs.

- [0] MONAI model zoo conventions (``models/*/configs``): every stage is a standard MONAI workflow config.
"""

from monai_osteo.bundle.datalist import datalist_files, datalist_items, resolve_datalist, segmentation_items
from monai_osteo.bundle.environment import log_run_info, versions
from monai_osteo.bundle.paths import (
    check_radiographs,
    find_bundle_root,
    list_radiographs,
    output_id,
    output_name_formatter,
    redact,
)
from monai_osteo.bundle.stages import config_fingerprint, data_fingerprint, run_stages

__all__ = [
    "check_radiographs",
    "config_fingerprint",
    "data_fingerprint",
    "datalist_files",
    "datalist_items",
    "find_bundle_root",
    "list_radiographs",
    "log_run_info",
    "output_id",
    "output_name_formatter",
    "redact",
    "resolve_datalist",
    "run_stages",
    "segmentation_items",
    "versions",
]
