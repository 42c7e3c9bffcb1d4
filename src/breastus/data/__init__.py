"""Data: image (and DICOM) decoding, dataset discovery, duplicate detection and splits."""

from breastus.data._audit import audit as audit
from breastus.data._audit_report import AuditImage as AuditImage
from breastus.data._audit_report import AuditReport as AuditReport
from breastus.data._cache import ImageCache as ImageCache
from breastus.data._dataset import UltrasoundDataset as UltrasoundDataset
from breastus.data._dicom import DicomFrame as DicomFrame
from breastus.data._dicom import is_dicom as is_dicom
from breastus.data._dicom import iter_dicom_frames as iter_dicom_frames
from breastus.data._dicom import read_dicom as read_dicom
from breastus.data._discovery import DEFAULT_CLASS_NAMES as DEFAULT_CLASS_NAMES
from breastus.data._discovery import Sample as Sample
from breastus.data._discovery import discover_folder as discover_folder
from breastus.data._discovery import read_manifest as read_manifest
from breastus.data._duplicates import DEFAULT_HASH_THRESHOLD as DEFAULT_HASH_THRESHOLD
from breastus.data._duplicates import duplicate_groups as duplicate_groups
from breastus.data._io import load_image as load_image
from breastus.data._io import load_mask as load_mask
from breastus.data._splits import Split as Split
from breastus.data._splits import kfold_indices as kfold_indices
from breastus.data._splits import train_val_test_split as train_val_test_split

__all__ = [
    "DEFAULT_CLASS_NAMES",
    "DEFAULT_HASH_THRESHOLD",
    "AuditImage",
    "AuditReport",
    "DicomFrame",
    "ImageCache",
    "Sample",
    "Split",
    "UltrasoundDataset",
    "audit",
    "discover_folder",
    "duplicate_groups",
    "is_dicom",
    "iter_dicom_frames",
    "kfold_indices",
    "load_image",
    "load_mask",
    "read_dicom",
    "read_manifest",
    "train_val_test_split",
]
