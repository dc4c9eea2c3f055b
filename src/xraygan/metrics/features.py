"""Feature extractors for the evaluation metrics (``--features``) and an on-disk feature cache.

Every extractor maps images (n, 1, H, W) float in [-1, 1] to features (n, d) float32 and has a
``fingerprint`` (a hash of its weights and options) recorded in every result and used in cache keys.

- ``xray``: the small X-ray encoder shipped in the package (``xraygan.metrics.encoder``), with a
  classifier head for class consistency.
- ``inception``: Inception-v3 pool3 (2048-d) FID features through torch-fidelity's TF-compatible
  port (Heusel et al. 2017; Seitzer's pytorch-fid / Obukhov's torch-fidelity), from a local weights
  file. Offline numbers are only comparable with published FID when that exact file is used.
- ``random``: a randomly initialised CNN with a fixed seed (Lee et al. 2022).
- ``radiomics``: pyradiomics first-order, GLCM, GLRLM, GLSZM, GLDM and NGTDM features on the whole
  image (Frechet Radiomics Distance; Osuala et al. 2024, Konz et al. 2026), z-scored by the real
  set's statistics in :mod:`xraygan.metrics.evaluate`. Optional extra; roughly 0.1-0.5 s per image.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from xraygan.errors import XrayganError
from xraygan.utils.pixels import signed_tensor, to_uint8

log = logging.getLogger(__name__)

EXTRACTORS = ("xray", "random", "inception", "radiomics")
INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_HELP = (
    f"the FID Inception-v3 weights file ({INCEPTION_FILE}, 91 MB) is published with pytorch-fid "
    "(github.com/mseitzer/pytorch-fid, release 'fid_weights') and torch-fidelity (release v0.2.0, "
    "weights-inception-2015-12-05-6726825d.pth); download it on a connected machine and pass --inception-weights FILE"
)


def shipped_encoder_path() -> Path:
    """Path of the X-ray encoder checkpoint shipped inside the package."""
    return Path(__file__).resolve().parents[1] / "assets" / "xray_encoder.pt"


def file_sha256(path: str | Path, length: int = 16) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:length]


@dataclass
class Extractor:
    """A feature network plus what the results need to say about it."""

    name: str
    net: Callable  # (B, 1, input_size, input_size) in [-1, 1] -> (B, d) tensor
    input_size: int | None  # images are resized to this first (None: passed as they are)
    fingerprint: str
    dim: int
    device: object = "cpu"
    classes: list[str] | None = None  # classifier head classes (xray only)
    head: Callable | None = field(default=None, repr=False)
    batch: int = 256
    classify: Callable | None = field(default=None, repr=False)  # features -> class logits (xray)
    standardise: bool = False  # z-score features by the real set's statistics before distances (radiomics)
    class_groups: dict | None = None  # dataset class name -> head classes that read as it (xray only)

    def _batches(self, images, fn):
        import torch

        from xraygan.data.dataset import resize_images

        from xraygan.utils.progress import bar

        outs = []
        with torch.inference_mode(), bar(total=int(images.shape[0]), desc=f"{self.name} features", unit="img") as pb:
            for s in range(0, images.shape[0], self.batch):
                x = images[s:s + self.batch].float()
                if self.input_size:
                    x = resize_images(x, self.input_size)
                outs.append(fn(x.to(self.device)).float().cpu())
                pb.update(x.shape[0])
        return torch.cat(outs).numpy() if outs else np.zeros((0, self.dim), np.float32)

    def features(self, images) -> np.ndarray:
        """Features (n, dim) float32 for images (n, 1, H, W) in [-1, 1]."""
        return self._batches(images, self.net)

    def predict_features(self, feats: np.ndarray) -> np.ndarray:
        """Class index per feature row from the classifier head (no second pass over the images)."""
        import torch

        if self.classify is None:
            raise XrayganError(f"--features {self.name} has no classifier head")
        with torch.inference_mode():
            return self.classify(torch.from_numpy(np.asarray(feats, np.float32)).to(self.device)).argmax(1).cpu().numpy()

    def predict(self, images) -> np.ndarray:
        """Classifier-head class index per image (xray encoder only)."""
        if self.head is None:
            raise XrayganError(f"--features {self.name} has no classifier head; class consistency needs the xray encoder")
        head = self.head
        return self._batches(images, lambda x: head(x).argmax(1, keepdim=True))[:, 0].astype(np.int64)

    def describe(self) -> dict:
        return {"name": self.name, "fingerprint": self.fingerprint, "dim": self.dim, "input_size": self.input_size}


def get_extractor(name: str = "xray", device="cpu", inception_weights: str | Path | None = None,
                  encoder_path: str | Path | None = None, seed: int = 0, inception_net=None) -> Extractor:
    """Build the extractor ``name`` (one of :data:`EXTRACTORS`) on ``device``.

    ``encoder_path`` overrides the shipped xray encoder; ``inception_net`` injects a stand-in
    network for the inception path (it gets uint8 (B, 3, H, W) like torch-fidelity's extractor).
    """
    import torch

    device = torch.device(device)
    if name == "xray":
        return _xray(Path(encoder_path) if encoder_path else shipped_encoder_path(), device)
    if name == "random":
        from xraygan.metrics.encoder import RandomCNN

        net = RandomCNN(seed).eval().to(device)
        return Extractor("random", net, 64, f"randomcnn-seed{seed}-v1", 256, device)
    if name == "inception":
        return _inception(inception_weights, device, inception_net)
    if name == "radiomics":
        from xraygan.metrics.radiomics import radiomics_network

        net, fp, dim = radiomics_network()
        return Extractor("radiomics", net, None, fp, dim, "cpu", batch=64, standardise=True)
    raise XrayganError(f"--features {name}: unknown extractor; choose one of {', '.join(EXTRACTORS)}")


def _xray(path: Path, device) -> Extractor:
    from xraygan.metrics.encoder import SHIPPED_CLASS_GROUPS, load_encoder

    if not path.is_file():
        raise XrayganError(f"xray encoder weights {path} are missing; reinstall xraygan or train them with scripts/train_xray_encoder.py")
    model, ckpt = load_encoder(path)
    model = model.to(device)
    fp = f"{ckpt.get('name', 'xray-encoder')}-{file_sha256(path)}"
    groups = {str(k).lower(): tuple(str(c).lower() for c in v) for k, v in dict(ckpt.get("class_groups", SHIPPED_CLASS_GROUPS)).items()}
    return Extractor("xray", model.embed, model.config.size, fp, model.config.dim, device, list(ckpt["classes"]), model,
                     classify=model.head, class_groups=groups)


def _fidelity_inception(cls, weights: Path):
    """torch-fidelity's Inception-v3 with ``weights``, never unpickling code from the file.

    torch-fidelity reads a weights path with ``torch.load(..., weights_only=False)``, which runs any
    code a tampered file carries. The file is read here with ``weights_only=True`` (tensors only),
    checked to be a plain ``{name: tensor}`` mapping, and re-saved to a private temporary file that
    torch-fidelity then loads: that copy holds nothing but tensors xraygan wrote.
    """
    import tempfile

    import torch

    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as err:  # pickled code, a truncated or non-torch file
        raise XrayganError(f"--inception-weights {weights}: not a plain PyTorch weights file xraygan can read safely "
                           f"(it is loaded with weights_only=True and never unpickled as code): {str(err).splitlines()[0][:200]}; "
                           f"{INCEPTION_HELP}") from None
    if not isinstance(state, dict) or not state or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise XrayganError(f"--inception-weights {weights}: holds no mapping of layer names to tensors; {INCEPTION_HELP}")
    with tempfile.TemporaryDirectory(prefix="xraygan-inception-") as tmp:
        copy = Path(tmp) / "weights.pth"
        torch.save(dict(state), copy)
        del state
        try:
            return cls("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(copy))
        except RuntimeError as err:  # load_state_dict: missing / unexpected keys or shapes
            first = str(err).splitlines()[0][:300]
            raise XrayganError(f"--inception-weights {weights}: does not hold the FID Inception-v3 weights ({first}); "
                               f"{INCEPTION_HELP}") from None


def _inception(weights, device, net=None) -> Extractor:
    import torch

    if net is None:
        if not weights:
            raise XrayganError(f"--features inception needs --inception-weights FILE; {INCEPTION_HELP}")
        weights = Path(weights)
        if not weights.is_file():
            raise XrayganError(f"--inception-weights {weights}: no such file; {INCEPTION_HELP}")
        try:
            from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
        except ImportError:
            raise XrayganError("--features inception needs torch-fidelity; pip install 'xraygan[inception]' (or torch-fidelity)") from None
        net = _fidelity_inception(FeatureExtractorInceptionV3, weights)
        fingerprint = f"inception-v3-compat-{file_sha256(weights)}"
    else:
        fingerprint = f"inception-standin-{type(net).__name__}"
    net = net.eval().to(device)

    def forward(x: torch.Tensor) -> torch.Tensor:
        # grayscale -> 3 identical channels only at the boundary of the ImageNet model
        u8 = to_uint8(x).repeat(1, 3, 1, 1)
        out = net(u8)
        return out[0] if isinstance(out, (tuple, list)) else out

    probe = forward(torch.zeros(1, 1, 32, 32, device=device))
    return Extractor("inception", forward, None, fingerprint, int(probe.shape[1]), device, batch=64)


def to_tensor(pixels: np.ndarray, size: int | None = None):
    """uint8 (n, H, W) -> float (n, 1, size, size) in [-1, 1], resized with ``resize_images``."""
    from xraygan.data.dataset import resize_images

    x = signed_tensor(pixels).unsqueeze(1)
    return resize_images(x, size) if size else x


# --- cache -----------------------------------------------------------------------------------------
def default_cache_dir() -> Path:
    import os

    env = os.environ.get("XRAYGAN_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "xraygan" / "features"


def cache_key(pixels: np.ndarray, extractor: Extractor, size: int) -> str:
    """Hash of the image content, the extractor (name + fingerprint) and the evaluation size."""
    h = hashlib.sha256()
    arr = np.ascontiguousarray(pixels)
    h.update(f"{arr.shape}|{arr.dtype}|{extractor.name}|{extractor.fingerprint}|{size}|v1".encode())
    h.update(arr.tobytes())
    return h.hexdigest()[:32]


def cached_features(pixels: np.ndarray, extractor: Extractor, size: int, cache_dir: Path | None) -> np.ndarray:
    """Features of uint8 images ``pixels`` (n, H, W) at ``size`` px, read from / written to the cache.

    ``cache_dir=None`` disables the cache.
    """
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"{extractor.name}-{cache_key(pixels, extractor, size)}.npy"
        if path.is_file():
            try:
                return np.load(path)
            except (OSError, ValueError):
                log.warning("ignoring unreadable feature cache file %s", path)
    feats = extractor.features(to_tensor(pixels, size))
    if path is not None:
        import io

        from xraygan.utils.fs import atomic_write_bytes

        buf = io.BytesIO()
        np.save(buf, feats)
        atomic_write_bytes(path, buf.getvalue())
    return feats


class RealFeatures:
    """Features of every real image an evaluation needs (the real halves, the training and the
    held-out sets of memorisation), from one pass over the distinct images.

    The distinct images (exact pixel duplicates counted once) are put in a canonical order (by a
    hash of their pixels) and their features read from / written to the cache as one set, so a
    second evaluation of the same data hits the cache whatever its seed. An image's features do
    not depend on the other images of its batch, so the rows are those of separate passes.
    """

    def __init__(self, parts: list[np.ndarray], extractor: Extractor, size: int, cache_dir: Path | None):
        digests = [[hashlib.blake2b(np.ascontiguousarray(row).data, digest_size=16).digest() for row in p] for p in parts]
        first: dict[bytes, tuple[int, int]] = {}
        for pi, ds in enumerate(digests):
            for i, d in enumerate(ds):
                first.setdefault(d, (pi, i))
        order = sorted(first)
        pos = {d: j for j, d in enumerate(order)}
        self.index = [np.array([pos[d] for d in ds], np.int64) for ds in digests]
        if order:
            pool = np.stack([parts[pi][i] for pi, i in (first[d] for d in order)])
            self.pool = cached_features(pool, extractor, size, cache_dir)
        else:
            self.pool = np.zeros((0, extractor.dim), np.float32)

    def part(self, i: int) -> np.ndarray:
        """Features (n_i, d) of the rows of ``parts[i]``, in its order."""
        return self.pool[self.index[i]]
