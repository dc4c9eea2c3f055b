"""Quality per CPU-minute: conditional GAN arms against the tutorial DCGAN, snapshot by snapshot.

Usage::

    python benchmarks/quality_per_minute.py PREPARED [--arms default cpu-auto tutorial ...] \
        [--minutes 30] [--every 5] [--size 64] [--threads 1] [--work /tmp/qpm] [--n 1000]

PREPARED is a prepared dataset of the shared chest X-rays (``xraygan prepare
/work/shared/data/chest-xray-pneumonia/labels.csv PREPARED --size 32``). Arms (``--arms``):

- ``default``: today's conditional DCGAN at the TrainConfig defaults (width 64, batch 64, latent 128);
- ``cpu-auto``: the conditional DCGAN with what ``xraygan train`` chooses on a CPU
  (:func:`xraygan.training.config.auto_settings`; its size is replaced by ``--size``);
- ``tutorial``: the unconditional ``dcgan-tutorial`` (the reference; pooled FD/KID only);
- every other family registered in ``FAMILIES`` (e.g. ``fastgan``, ``projected``), conditional, at
  its defaults;
- ``w32b64``, ``w64b32``: DCGAN width/batch candidates for the CPU default;
- ``cpu-base``: ``cpu-auto`` pinned to the settings before issue 12's changes (no DiffAugment, no
  mode seeking; in the tables of sessions 5-6 this arm is called ``cpu-auto``);
- ``cpu-translate`` (DiffAugment translation), ``cpu-nobalance`` (labels at the data's class
  frequencies instead of balanced), ``cpu-ms`` (MSGAN's mode-seeking term, weight 1):
  ``cpu-base`` with one change; ``cpu-translate-ms``: with both (the 64-px default of sessions 6-7);
  ``cpu-translate-ms2`` (mode-seeking weight 2) and ``cpu-translate-ms-ema`` (EMA decay 0.9995 instead
  of 0.999): candidates on top of it (``cpu-translate-ms2`` is today's 64-px ``cpu-auto``); ``cpu-ms2``: mode-seeking weight 2 without DiffAugment (32 px);

Training time is **process CPU time** (``time.process_time()``) of the training process, counted
from the arm's start; the snapshot checkpoints written at each mark are excluded (their CPU time is
subtracted), and all scoring happens afterwards, so evaluation never counts. CPU time, unlike wall
time, does not grow when other jobs load a shared machine (use ``--threads 1``: with more threads,
spinning worker threads add CPU time without work). Snapshots are taken at ``--every``,
2x``--every``, ... ``--minutes`` CPU-minutes.

Scoring of each snapshot, in two feature spaces (``xray``: the shipped X-ray encoder; ``random``: a
randomly initialised CNN that nothing trains or selects on):

- reference per class: the test-split images of the class, or val+test when the test split has
  fewer than 200 of it (patients the runs never saw), at most ``--n``;
- synthetic: as many images of the class from fresh latents (seed ``FAKE_SEED``); the tutorial
  (unconditional) draws as many as the pooled reference;
- floor: as many *training-split* images of the class, at random (seed ``FLOOR_SEED``), scored
  against the same reference: what a perfect generator of the training distribution gets at this n;
- pooled FD and KID (x1000) over all classes; per class precision, recall, coverage;
- copying: share of synthetic images whose nearest training image (L2 on [0, 1] pixels) is closer
  than the 1st percentile of the held-out reference images' nearest-training distances
  (:mod:`xraygan.metrics.memorisation`; about 1% expected without copying).

An arm whose D reads the X-ray encoder (``projected``) is marked ``*``: judge it in ``random`` only.

Resumable per arm and snapshot: the arm's training state (``WORK/ARM/state.json``, snapshot
checkpoints ``WORK/ARM/snapshots/minNN.pt``) continues from its last snapshot; each scored snapshot
is ``WORK/ARM/scores/minNN.json`` and is only printed again.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np

FAKE_SEED, FLOOR_SEED, TEST_MIN = 123457, 99, 200
SPACES = ("xray", "random")
ENCODER_ARMS = {"projected"}  # D reads the X-ray encoder: judged in the random space only
CANDIDATES = {"w32b64": {"width": 32, "batch": 64}, "w64b32": {"width": 64, "batch": 32}}
# The CPU default as it was before issue 12's changes (no DiffAugment, no mode seeking), pinned so the
# variants below keep their meaning whatever today's defaults are; in the tables of sessions 5-6 this
# arm was called cpu-auto (then the same settings).
CPU_BASE = {"diffaug": "none", "model_options": {"mode_seeking": 0.0}}
# cpu-base with one change (64-px diagnosis: NORMAL recall and copying after 10 minutes)
CPU_VARIANTS = {"cpu-base": {}, "cpu-translate": {"diffaug": "translation"}, "cpu-nobalance": {"model_options": {"balance": False}},
                "cpu-ms": {"model_options": {"mode_seeking": 1.0}},
                "cpu-ms2": {"model_options": {"mode_seeking": 2.0}},  # 32 px: mode-seeking weight 2 without DiffAugment
                "cpu-translate-ms": {"diffaug": "translation", "model_options": {"mode_seeking": 1.0}},
                # candidates beyond today's 64-px default (= cpu-translate-ms) for the seeds whose NORMAL recall lags
                "cpu-translate-ms2": {"diffaug": "translation", "model_options": {"mode_seeking": 2.0}},
                "cpu-translate-ms-ema": {"diffaug": "translation", "model_options": {"mode_seeking": 1.0}, "ema": 0.9995}}


def arm_config(arm: str, size: int) -> dict:
    """TrainConfig fields of ``arm`` (without data/out/runtime fields)."""
    from xraygan.training.family_options import FAMILIES

    if arm == "default":
        return {"model": "dcgan", "conditional": True}
    if arm == "cpu-auto" or arm in CPU_VARIANTS:
        from xraygan.training.config import TrainConfig, auto_settings

        chosen, _ = auto_settings("cpu", size, TrainConfig(), given=set())
        chosen.pop("steps", None)
        chosen.pop("max_time", None)
        if arm == "cpu-auto":  # today's defaults, whatever they are
            return {**chosen, "model": "dcgan", "conditional": True}
        change = CPU_VARIANTS[arm]
        options = {**CPU_BASE["model_options"], **change.get("model_options", {})}
        return {**chosen, "model": "dcgan", "conditional": True, **CPU_BASE, **change, "model_options": options}
    if arm == "tutorial":
        return {"model": "dcgan-tutorial", "conditional": False}
    if arm in CANDIDATES:
        return {"model": "dcgan", "conditional": True, **CANDIDATES[arm]}
    if arm in FAMILIES:
        return {"model": arm, "conditional": True}
    raise SystemExit(f"unknown arm {arm}; choose from default, cpu-auto, tutorial, {', '.join([*CANDIDATES, *CPU_VARIANTS])}, or a family of {', '.join(FAMILIES)}")


class Snapshots:
    """Loop callback: a checkpoint at every CPU-time mark; stops the run after the last one."""

    def __init__(self, marks: list[int], state_path: Path, state: dict) -> None:
        self.marks, self.path, self.state = marks, state_path, state
        self.base = float(state.get("cpu_s", 0.0))
        self.t0, self.excluded = time.process_time(), 0.0

    def cpu(self) -> float:
        return self.base + time.process_time() - self.t0 - self.excluded

    def __call__(self, ctx) -> None:
        todo = [m for m in self.marks if str(m) not in self.state["snapshots"]]
        if not todo or self.cpu() < 60 * todo[0]:
            return None
        t = time.process_time()
        m, cpu = todo[0], self.cpu()
        snap = self.path.parent / "snapshots" / f"min{m:02d}.pt"
        snap.parent.mkdir(parents=True, exist_ok=True)
        ctx.save_checkpoint(snap)
        ctx.save_checkpoint()  # latest.pt: the arm resumes from here
        self.state["snapshots"][str(m)] = {"step": ctx.step, "images": ctx.images_seen, "cpu_s": round(cpu, 1),
                                           "wall_s": round(ctx.elapsed, 1), "path": str(snap)}
        self.state["cpu_s"] = cpu
        self.path.write_text(json.dumps(self.state, indent=1))
        if len(todo) == 1:
            ctx.cfg.steps = ctx.step  # the loop ends after this step ("done")
        self.excluded += time.process_time() - t
        return None


def train_arm(arm: str, a: argparse.Namespace) -> dict:
    """Train ``arm`` until its last snapshot (continuing a stopped arm); returns its state."""
    from xraygan.training.config import TrainConfig
    from xraygan.training.loop import resume_config, train

    marks = list(range(a.every, a.minutes + 1, a.every))
    root = a.work / arm
    state_path = root / "state.json"
    state = json.loads(state_path.read_text()) if state_path.is_file() else {"arm": arm, "cpu_s": 0.0, "snapshots": {}}
    if all(str(m) in state["snapshots"] for m in marks):
        return state
    run = root / "run"
    state["config"] = arm_config(arm, a.size)
    cb = Snapshots(marks, state_path, state)
    root.mkdir(parents=True, exist_ok=True)
    if state["snapshots"] and (run / "checkpoints" / "latest.pt").is_file():
        import shutil

        last = max(state["snapshots"].values(), key=lambda s: s["cpu_s"])
        shutil.copyfile(last["path"], run / "checkpoints" / "latest.pt")  # continue exactly where the CPU time was counted
        cfg = resume_config(run, steps=10**8, threads=a.threads, device="cpu")
        train(cfg, resume=True, callbacks=[cb])
    else:
        state.update(cpu_s=0.0, snapshots={})
        cb.base = 0.0
        cfg = TrainConfig(**{**state["config"], "data": str(a.data), "out": str(run), "size": a.size, "steps": 10**8,
                             "sample_every": 10**8, "ckpt_every": 10**8, "ckpt_minutes": 0.0, "log_every": 50,
                             "threads": a.threads, "device": "cpu", "seed": a.seed, "force": True})
        train(cfg, callbacks=[cb])
    state = json.loads(state_path.read_text())
    state["diffaug"] = _run_option(run, "diffaug")
    state_path.write_text(json.dumps(state, indent=1))
    return state


def _run_option(run: Path, key: str):
    import yaml

    return (yaml.safe_load((run / "config.yaml").read_text()).get("options") or {}).get(key)


class Reference:
    """Real images and their features: per-class reference (held out), floor (train) and the train set."""

    def __init__(self, a: argparse.Namespace) -> None:
        from xraygan.data.dataset import PreparedDataset
        from xraygan.metrics.evaluate import _resize_pixels
        from xraygan.metrics.per_class import random_subset

        ds = PreparedDataset.open(a.data)
        self.classes = list(ds.classes)
        pix = lambda idx: _resize_pixels(np.asarray(ds.pixels()[idx]), a.size)  # noqa: E731
        rng = np.random.default_rng(FLOOR_SEED)
        self.ref, self.floor, self.ref_splits = {}, {}, {}
        for i, c in enumerate(self.classes):
            test = ds.indices(split="test", label=c)
            splits = ["test"] if len(test) >= TEST_MIN else ["val", "test"]
            ref_idx = random_subset(ds.indices(split=splits, label=c), a.n, rng)
            self.ref[c], self.ref_splits[c] = pix(ref_idx), "+".join(splits)
            self.floor[c] = pix(random_subset(ds.indices(split="train", label=c), len(ref_idx), rng))
        self.train = pix(ds.indices(split="train"))
        self.extractors, self.feats = {}, {}
        for space in SPACES:
            from xraygan.metrics.features import get_extractor

            self.extractors[space] = get_extractor(space, "cpu", seed=0)
            self.feats[space] = {c: (self.f(space, self.ref[c]), self.f(space, self.floor[c])) for c in self.classes}

    def f(self, space: str, pixels: np.ndarray) -> np.ndarray:
        from xraygan.metrics.features import to_tensor

        return self.extractors[space].features(to_tensor(pixels))


def fakes_of(snapshot: Path, arm: str, ref: Reference) -> dict:
    """Per-class synthetic uint8 images (conditional), or {"all": ...} for an unconditional arm."""
    from xraygan.generate import load_generator
    from xraygan.metrics.evaluate import to_uint8_pixels

    s = load_generator(snapshot.parent.parent / "run", snapshot, device="cpu")
    if s.n_classes:
        return {c: to_uint8_pixels(s.sample(len(ref.ref[c]), labels=c, seed=FAKE_SEED)) for c in ref.classes}
    return {"all": to_uint8_pixels(s.sample(sum(len(r) for r in ref.ref.values()), seed=FAKE_SEED))}


def _pooled(space_feats: dict, fake_feats: np.ndarray) -> dict:
    from xraygan.metrics.frechet import frechet_distance_features, kernel_inception_distance

    ref = np.concatenate([r for r, _ in space_feats.values()])
    flo = np.concatenate([f for _, f in space_feats.values()])
    return {"fd": {"value": frechet_distance_features(ref, fake_feats), "floor": frechet_distance_features(ref, flo)},
            "kid": {"value": 1000 * kernel_inception_distance(ref, fake_feats, subsets=50)[0],
                    "floor": 1000 * kernel_inception_distance(ref, flo, subsets=50)[0]}}


def score_snapshot(snapshot: Path, arm: str, ref: Reference) -> dict:
    """Scores of one snapshot in every space, plus the pixel-space copying check."""
    from xraygan.metrics.memorisation import memorisation_scores
    from xraygan.metrics.per_class import class_scores

    fakes = fakes_of(snapshot, arm, ref)
    pooled_fake = np.concatenate(list(fakes.values()))
    held = np.concatenate([ref.ref[c] for c in ref.classes])
    unit = lambda p: p.astype(np.float64) / 255.0  # noqa: E731
    mem = memorisation_scores(unit(pooled_fake), unit(ref.train), unit(held))
    out = {"copying": {"fake_below_share": mem["fake_below_share"], "heldout_below_share": mem["heldout_below_share"]}, "spaces": {}}
    for space in SPACES:
        ff = {c: ref.f(space, p) for c, p in fakes.items()}
        res = {"pooled": _pooled(ref.feats[space], np.concatenate(list(ff.values())))}
        if "all" not in fakes:
            res["per_class"] = {c: class_scores(ref.feats[space][c][0], ff[c], ref.feats[space][c][1], fakes[c], ref.floor[c])
                                for c in ref.classes}
        out["spaces"][space] = res
    return out


def print_rows(arm: str, m: int, snap: dict, sc: dict) -> None:
    mark = "*" if arm in ENCODER_ARMS else ""
    head = f"{arm + mark:10s} {m:3d} {snap['step']:6d} {snap['images'] / 1000:7.1f}"
    for space, res in sc["spaces"].items():
        p = res["pooled"]
        line = (f"{head} {space:6s} FD {p['fd']['value']:8.2f} ({p['fd']['floor']:6.2f}) KID {p['kid']['value']:7.2f} "
                f"({p['kid']['floor']:5.2f}) copy {100 * sc['copying']['fake_below_share']:4.1f}%")
        for c, e in (res.get("per_class") or {}).items():
            v = lambda k: f"{e[k]['value']:.2f}/{e[k]['floor']:.2f}"  # noqa: E731
            line += f" | {c[:4]} P {v('precision')} R {v('recall')} C {v('coverage')}"
        print(line, flush=True)


def cpu_info() -> str:
    model = platform.processor()
    flags = set()
    if os.path.exists("/proc/cpuinfo"):
        for ln in open("/proc/cpuinfo"):
            if ln.startswith("model name"):
                model = ln.split(":", 1)[1].strip()
            elif ln.startswith("flags"):
                flags = set(ln.split(":", 1)[1].split())
    shown = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f in flags]
    return f"{model}; flags: {', '.join(shown) or 'none of avx2/avx512f/avx512_bf16/amx_tile'}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--arms", nargs="+", default=None, help="default: default cpu-auto tutorial + every other registered family but stylegan2/pggan")
    ap.add_argument("--minutes", type=int, default=30, help="CPU-minutes of training per arm")
    ap.add_argument("--every", type=int, default=5, help="a snapshot every this many CPU-minutes")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--n", type=int, default=1000, help="max reference images per class")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("/tmp/qpm"))
    ap.add_argument("--train-only", action="store_true", help="train the arms' snapshots, score nothing (to run arms in parallel)")
    ap.add_argument("--score-only", action="store_true", help="score the snapshots the arms have, train nothing (e.g. after stopping a slow arm)")
    a = ap.parse_args()
    import torch

    from xraygan.training.family_options import FAMILIES

    torch.set_num_threads(a.threads)
    a.arms = a.arms or ["default", "cpu-auto", "tutorial"] + [f for f in FAMILIES if f not in ("dcgan", "dcgan-tutorial", "stylegan2", "pggan")]
    print(f"CPU: {cpu_info()}; threads {a.threads}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs "
          f"(time is process CPU time, so load hardly matters); size {a.size}; snapshots every {a.every} of {a.minutes} CPU-min", flush=True)
    states = {}
    for arm in a.arms:
        t = time.time()
        if a.score_only:
            path = a.work / arm / "state.json"
            states[arm] = json.loads(path.read_text()) if path.is_file() else {"snapshots": {}}
            continue
        states[arm] = train_arm(arm, a)
        reached = max((int(m) for m in states[arm]["snapshots"]), default=0)
        print(f"{arm}: snapshots up to {reached} of {a.minutes} CPU-min ({time.time() - t:.0f} s wall this call); config {states[arm].get('config')}; "
              f"diffaug {states[arm].get('diffaug')}", flush=True)
    if a.train_only:
        return
    ref = Reference(a)
    print("reference per class: " + ", ".join(f"{c} {len(ref.ref[c])} ({ref.ref_splits[c]})" for c in ref.classes)
          + "; floor: as many train-split images; FD/KID x1000 pooled; P/R/C value/floor; copy: pixel-space share below the held-out 1st percentile")
    print(f"{'arm':10s} min   step    kimg space  ...", flush=True)
    for arm in a.arms:
        for m, snap in sorted(states[arm]["snapshots"].items(), key=lambda kv: int(kv[0])):
            path = a.work / arm / "scores" / f"min{int(m):02d}.json"
            if not path.is_file():
                sc = score_snapshot(Path(snap["path"]), arm, ref)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(sc, indent=1))
            print_rows(arm, int(m), snap, json.loads(path.read_text()))
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"git {git or '?'}; * = D reads the X-ray encoder: judge it in the random space only")


if __name__ == "__main__":
    main()
