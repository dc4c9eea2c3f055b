"""Radiomics features for ``--features radiomics`` (Frechet Radiomics Distance).

Following Osuala et al. 2024 ("Towards learning contrast kinetics with multi-condition latent
diffusion models", which introduced the Frechet Radiomics Distance) and Konz et al. 2026, the
features are pyradiomics' (van Griethuysen et al. 2017) first-order, GLCM, GLRLM, GLSZM, GLDM
and NGTDM features of the whole image (mask = every pixel), computed in 2D. They are z-scored with
the real set's mean and standard deviation before any distance (see ``Extractor.standardise``).

Optional: ``pip install pyradiomics-bhklab six`` (``pyradiomics`` itself does not build on
Python 3.11). Slow: roughly 0.1-0.5 s per image on one core, so use a small ``--n``.
"""
from __future__ import annotations

import numpy as np

from xraygan.errors import XrayganError
from xraygan.utils.pixels import to_uint8

FEATURE_CLASSES = ("firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")


def _import():
    try:
        import SimpleITK as sitk  # noqa: N813
        from radiomics import featureextractor, setVerbosity
    except ImportError:
        raise XrayganError("--features radiomics needs pyradiomics; pip install pyradiomics-bhklab six (slow: ~0.1-0.5 s per image)") from None
    setVerbosity(40)  # errors only
    return sitk, featureextractor


def radiomics_features(pixels_u8: np.ndarray, bin_width: float = 8.0) -> np.ndarray:
    """(n, d) float64 radiomics features of uint8 images (n, H, W); every pixel is in the mask."""
    sitk, featureextractor = _import()
    ext = featureextractor.RadiomicsFeatureExtractor(binWidth=bin_width, force2D=True, force2Ddimension=0)
    ext.disableAllFeatures()
    for name in FEATURE_CLASSES:
        ext.enableFeatureClassByName(name)
    rows = []
    for img in pixels_u8:
        arr = np.asarray(img, np.float64)[None]  # (1, H, W): one 2D slice
        image = sitk.GetImageFromArray(arr)
        mask = sitk.GetImageFromArray(np.ones(arr.shape, np.uint8))
        out = ext.execute(image, mask, label=1)
        rows.append([float(v) for k, v in sorted(out.items()) if k.startswith("original_")])
    return np.nan_to_num(np.asarray(rows, np.float64))


def radiomics_network():
    """``(net, fingerprint, dim)`` of the radiomics extractor: ``net`` maps (n, 1, H, W) in [-1, 1]
    to (n, dim) features on the CPU (:func:`xraygan.metrics.features.get_extractor` wraps it)."""
    import torch

    _import()
    import radiomics

    def net(x: torch.Tensor) -> torch.Tensor:
        u8 = to_uint8(x[:, 0]).cpu().numpy()
        return torch.from_numpy(radiomics_features(u8))

    dim = int(net(torch.zeros(1, 1, 16, 16)).shape[1])
    fp = f"pyradiomics-{radiomics.__version__}-{'-'.join(FEATURE_CLASSES)}-bw8"
    return net, fp, dim
