"""Exporting synthetic images to other formats (DICOM Secondary Capture)."""
