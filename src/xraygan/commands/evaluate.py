"""Measure synthetic X-rays: how real (Frechet distance, KID, precision/recall, density/coverage,
class consistency), how diverse (mean SSIM over random pairs) and how novel (nearest training
images, authenticity). Every score is printed beside its floor: the same metric between two
disjoint halves of the real data at the same n (or the same statistic within the real set).

Two forms:
  xraygan evaluate --real data/cxr64 --fake samples/ --out eval.json
  xraygan evaluate runs/dcgan1 --real data/cxr64 [--checkpoint best]

DIRs are prepared datasets or folders with one sub-folder per class of PNG/JPEG/TIFF/BMP or DICOM
images (what `generate` writes, --format png or dicom). When --fake was written by `generate`, its
manifest.csv names the run: the result is also stored in RUN/eval/step_<step>_<features>_generated.json
(so `xraygan report RUN` shows it; a run folder that is gone is only a warning).
With a RUN, --n images are sampled from its EMA generator and the JSON is also stored in
RUN/eval/step_<step>_<features>.json. Memorisation uses --train, or, when --real is a prepared
dataset, its train split against its val+test splits.

Extractors (--features): xray (default; the encoder shipped with xraygan), random (seeded random
CNN, no weights), inception (standard FID Inception-v3; needs --inception-weights FILE and
torch-fidelity; offline numbers are comparable with published FID only with that exact file),
radiomics (pyradiomics-bhklab; slow: about 0.1-0.5 s per image on one core, use a small --n).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from xraygan.metrics.registry import METRICS
from xraygan.options import arg, positive_int, seed

HELP = "measure synthetic X-rays against real ones (FD, KID, PRDC, SSIM, memorisation) beside the real-vs-real floor"

# the rows of the printed table: (key, label, better), from the metric registry
ROWS = tuple((key, METRICS[key].label, METRICS[key].better) for key in ("fd", "kid", "precision", "recall", "density", "coverage", "ssim"))


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `xraygan evaluate`."""
    p.add_argument("run", nargs="?", type=Path, default=None, help="a run folder to sample from (instead of --fake)")
    p.add_argument("--real", type=Path, default=None, help="real images (required): prepared dataset or folder of class sub-folders")
    p.add_argument("--fake", type=Path, default=None, help="synthetic images: folder of class sub-folders (what `generate` writes) or prepared dataset")
    p.add_argument("--train", type=Path, default=None, help="the GAN's training images, for memorisation (default: --real's train split when it is a prepared dataset)")
    p.add_argument("--checkpoint", default="best", help="with RUN: checkpoint to sample (best, latest or a path); falls back to latest when there is no best.pt")
    p.add_argument("--features", default="xray", choices=("xray", "random", "inception", "radiomics"), help="feature extractor for FD, KID, PRDC and feature-space memorisation")
    p.add_argument("--n", type=arg(positive_int), default=2000, help="images per side (real half A, real half B, synthetic); fewer if fewer exist")
    p.add_argument("--size", type=arg(positive_int), default=None, help="evaluation resolution in pixels (default: the smaller of the real and synthetic images' sizes: synthetic images are never upsampled unless asked); both sides are resized with the same resizer")
    p.add_argument("--out", type=Path, default=None, help="JSON file to write (and OUT.pairs.png); default: RUN/eval/step_<step>_<features>.json, or FAKE.eval-<features>.json beside --fake")
    p.add_argument("--force", action="store_true", help="replace an existing --out JSON (and its OUT.pairs.png) that xraygan evaluate wrote")
    g = p.add_argument_group("metric options")
    g.add_argument("--seed", type=arg(seed), default=0, help="seed of the real halves, the synthetic sample, KID subsets and SSIM pairs")
    g.add_argument("--ssim-pairs", type=arg(positive_int), default=2000, help="random pairs for the mean SSIM diversity score")
    g.add_argument("--kid-subsets", type=arg(positive_int), default=100, help="random subsets over which KID is averaged")
    g.add_argument("--kid-subset-size", type=arg(positive_int), default=1000, help="images per KID subset (capped at n)")
    g.add_argument("--no-per-class", action="store_true", help="overall scores only")
    g = p.add_argument_group("extractor options")
    g.add_argument("--inception-weights", type=Path, default=None, help="local pt_inception-2015-12-05-6726825d.pth for --features inception")
    g.add_argument("--encoder", type=Path, default=None, help="use this xray encoder checkpoint instead of the shipped one")
    g.add_argument("--cache", type=Path, default=None, help="folder caching real-set features and memorisation's real-vs-real distances "
                   "(default: $XRAYGAN_CACHE or ~/.cache/xraygan/features)")
    g.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")


def format_result(res: dict) -> str:
    """A plain-text table: metric | synthetic vs real | floor (real vs real), overall and per class."""
    lines = [f"n = {res['n']} per side, {res['resolution']} px, features {res['features']['name']} ({res['features']['fingerprint']})"]
    groups = [("overall", res["overall"])] + list(res.get("per_class", {}).items())
    for name, block in groups:
        split = (res.get("report_splits") or {}).get(name)
        lines.append(f"\n[{name}]" + (f" n = {block['n']}" if "n" in block else "") + (f" ({block['n_patients']} patients, {split})" if "n_patients" in block else ""))
        ci = block.get("ci95") or {}
        lines.append(f"  {'metric':24s} {'synthetic':>12s} {'floor':>12s}  better" + ("   patient-bootstrap 95% CI" if ci else ""))
        for key, label, better in ROWS:
            v = block.get(key) or {}
            lo_hi = f"   [{_fmt(ci[key][0])}, {_fmt(ci[key][1])}]" if key in ci else ""
            lines.append(f"  {label:24s} {_fmt(v.get('value')):>12s} {_fmt(v.get('floor')):>12s}  {better}{lo_hi}")
    cc = res.get("class_consistency")
    if cc:
        lines.append("\n[class consistency: share read as its class by the encoder head]")
        lines += [f"  {c:24s} {_fmt(v['value']):>12s} {_fmt(v['floor']):>12s}  (real)" for c, v in cc.items()]
    memo = res.get("memorisation")
    if memo:
        lines.append(f"\n[memorisation: {res.get('memorisation_sets')}]")
        for space in ("pixel", "feature"):
            m = memo[space]
            lines.append(f"  {space:8s} below 1st pct of held-out: {m['fake_below']}/{m['n_fake']} (held-out {m['heldout_below_share']:.1%}); "
                         f"authenticity {m['authenticity']:.3f} (held-out {m['authenticity_heldout']:.3f})")
        if memo.get("closest_pairs_png"):
            lines.append(f"  closest pairs: {memo['closest_pairs_png']}")
    if res.get("timings"):
        lines.append("\nseconds per stage: " + ", ".join(f"{k.replace('_', ' ')} {v:.1f}" for k, v in res["timings"].items()))
    return "\n".join(lines)


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4g}"


def run(args: argparse.Namespace) -> int:
    """Call :func:`xraygan.metrics.evaluate.evaluate` with the parsed options and print the table."""
    from xraygan.errors import UsageError
    from xraygan.metrics.evaluate import evaluate

    if args.real is None:
        raise UsageError("--real is required: the real images to compare with (a prepared dataset or class folders)")
    checkpoint, out = args.checkpoint, args.out
    if out is None and args.run is None and args.fake is not None:
        fake = args.fake.resolve()  # `--fake .` has no name of its own
        out = fake.parent / f"{fake.name}.eval-{args.features}.json"  # beside the synthetic folder
    if args.run is not None and checkpoint == "best" and not (args.run / "checkpoints" / "best.pt").is_file():
        checkpoint = "latest"
    res = evaluate(
        args.real, args.fake, train=args.train, run=args.run, checkpoint=checkpoint, size=args.size, out=out,
        features=args.features, n=args.n, seed=args.seed, ssim_pairs=args.ssim_pairs, kid_subsets=args.kid_subsets,
        kid_subset_size=args.kid_subset_size, device=args.device, inception_weights=args.inception_weights,
        encoder_path=args.encoder, cache=False if args.no_cache else args.cache, per_class=not args.no_per_class,
        force=args.force,
    )
    print(format_result(res))
    for path in res.get("stored", []):
        print(f"wrote {path}")
    return 0
