"""Low-level pixel statistics of generated images per class beside the real held-out ones.

    python benchmarks/pixel_stats.py PREPARED RUN[:CHECKPOINT] [RUN[:CHECKPOINT] ...] [--n 300]

Per class: mean intensity and per-image intensity SD (mean +- SD over images), the mean of a 3-px
border strip and of the centre, high-frequency energy (mean |x - 3x3 box blur|) and 2x2 checkerboard
energy (mean |a + d - b - c| over 2x2 cells; transposed convolutions leave it high). Real: PREPARED's
val+test images of the class; generated: ``--n`` images per class from the (EMA) generator of RUN at
CHECKPOINT (latest, best or a path), latents from seed 5. A quick check of whether a model's gap in a
feature space comes from contrast, borders or upsampling artefacts.
"""
from __future__ import annotations

import argparse

import numpy as np


def describe(u8: np.ndarray) -> str:
    from scipy.ndimage import uniform_filter

    x = u8.astype(np.float32) / 255
    h, w = x.shape[1:]
    m, s = x.mean((1, 2)), x.std((1, 2))
    hf = np.abs(x - uniform_filter(x, size=(1, 3, 3))).mean()
    cb = np.abs(x[:, 0::2, 0::2] + x[:, 1::2, 1::2] - x[:, 0::2, 1::2] - x[:, 1::2, 0::2]).mean()
    centre = x[:, 3 * h // 8:5 * h // 8, 3 * w // 8:5 * w // 8].mean()
    return (f"mean {m.mean():.3f}+-{m.std():.3f}  image SD {s.mean():.3f}+-{s.std():.3f}  border {x[:, :3].mean():.3f}  "
            f"centre {centre:.3f}  high-freq {hf:.4f}  checkerboard {cb:.4f}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("prepared")
    ap.add_argument("runs", nargs="+", help="RUN or RUN:CHECKPOINT")
    ap.add_argument("--n", type=int, default=300)
    a = ap.parse_args(argv)
    from xraygan.data.dataset import PreparedDataset
    from xraygan.generate import load_generator
    from xraygan.training.sampler import to_uint8

    ds = PreparedDataset.open(a.prepared)
    pix, lab, split = np.asarray(ds.pixels()), np.asarray(ds.labels), np.asarray(ds.splits)
    for c, name in enumerate(ds.classes):
        print(f"real (val+test) {name:10s} {describe(pix[(lab == c) & (split != 'train')])}")
    for spec in a.runs:
        run, _, ckpt = spec.partition(":")
        sampler = load_generator(run, ckpt or "latest", device="cpu")
        for c, name in enumerate(ds.classes):
            u8 = to_uint8(sampler.sample(a.n, labels=c, seed=5))
            print(f"{spec} {name:10s} {describe(u8.reshape(len(u8), *u8.shape[-2:]))}")


if __name__ == "__main__":
    main()
