"""Fault injection: kill -9 xraygan at random moments, rerun, and count what recovered (issue 15).

    python benchmarks/faults.py                                   # 20 kills per command (~15-35 min on 2 cores)
    python benchmarks/faults.py --kills 5 --commands prepare,train

On the chest X-ray sample shipped in the package, at 16 px with tiny budgets, for each command:

1. one uninterrupted reference run (its wall time T sets the kill window);
2. N times: start the command in a new process group, SIGKILL the whole group at a random moment
   drawn uniformly between the moment the reference took its output lock (start-up and imports are
   left out) and T, inspect what is on disk, then rerun
   it the way a user would: ``prepare``/``generate`` the same command again (with ``--force``, into
   the same output, so a complete earlier output is being replaced when the kill lands);
   ``train`` with ``--resume RUN`` (or the same command with ``--force`` when the kill came before the
   first checkpoint); ``experiment`` the same command again (it resumes).

Per command it prints: kills that landed while the process was still running; outputs visible
after the kill that were partial (an output folder that exists but does not open: must be 0);
leftovers right after the kill (staging folders, temporary files: expected, they are cleaned by the
next run); reruns that completed with a valid output ("recovered"); results identical to the
uninterrupted reference (train: every weight bitwise, as the loop promises exact resume; prepare:
pixels.npy and manifest.csv; generate: every file; experiment: every unit's scores); ``.pt`` files
that fail ``torch.load(weights_only=True)`` (after the kill or after the rerun); leftovers after
the rerun (staging, ``.tmp``, lock files: must be 0).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

COMMANDS = ("prepare", "train", "generate", "experiment")
TINY_GAN = ["--model", "dcgan", "--conditional", "--width", "8", "--latent-dim", "16", "--batch", "8", "--device", "cpu",
            "--threads", "1"]
STAGING = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.(partial|old|tmp)$|\.partial$|^\..+\.lock$")


@dataclass
class Tally:
    kills: int = 0
    mid_run: int = 0
    partial_visible: int = 0
    leftovers_after_kill: int = 0
    recovered: int = 0
    identical: int = 0
    bad_pt: int = 0
    leftovers_after_rerun: int = 0
    rerun_s: list = field(default_factory=list)
    notes: list = field(default_factory=list)


# --- processes -------------------------------------------------------------------------------------

def _env(work: Path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg",
               XRAYGAN_PATIENT_KEY_FILE=str(work / "patient.key"), XRAYGAN_CACHE=str(work / "cache"))
    return env


def xraygan(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "xraygan", *args]


def run_to_end(cmd: list[str], env: dict, log: Path) -> tuple[int, float]:
    t = time.perf_counter()
    with open(log, "w") as fh:
        rc = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True).returncode
    return rc, time.perf_counter() - t


def reference_run(cmd: list[str], env: dict, log: Path, out: Path) -> tuple[int, float, float]:
    """Run ``cmd`` to the end; (rc, wall time, time at which its lock file beside ``out`` first appeared)."""
    lock = out.parent / f".{out.name}.lock"
    t = time.perf_counter()
    first = None
    with open(log, "w") as fh:
        p = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        while p.poll() is None:
            if first is None and lock.exists():
                first = time.perf_counter() - t
            time.sleep(0.01)
    total = time.perf_counter() - t
    return p.returncode, total, first if first is not None else 0.0


def run_and_kill(cmd: list[str], env: dict, log: Path, at: float) -> bool:
    """Start ``cmd``; SIGKILL its whole process group after ``at`` seconds. True if it was still running."""
    with open(log, "w") as fh:
        p = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            p.wait(timeout=at)
            return False
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            return True


# --- inspection --------------------------------------------------------------------------------------

def bad_pt_files(root: Path) -> list[Path]:
    import torch

    bad = []
    for p in root.rglob("*.pt") if root.exists() else []:
        try:
            torch.load(p, map_location="cpu", weights_only=True)
        except Exception:
            bad.append(p)
    return bad


def leftovers(out: Path, lock_too: bool) -> list[str]:
    """xraygan's staging folders, temporary files and (optionally) lock files beside and inside ``out``."""
    found = []
    if out.parent.exists():
        for e in out.parent.iterdir():
            if e.name.startswith(f".{out.name}.") and STAGING.search(e.name) and (lock_too or not e.name.endswith(".lock")):
                found.append(e.name)
    if out.is_dir():
        for p in out.rglob("*"):
            if STAGING.search(p.name) and (lock_too or not p.name.endswith(".lock")):
                found.append(str(p.relative_to(out)))
    return found


def valid_prepared(out: Path) -> bool:
    from xraygan.data.dataset import PreparedDataset

    try:
        ds = PreparedDataset.open(out)
        px = ds.pixels()
        return len(px) == len(ds) and all((out / r["file"]).is_file() for r in ds.rows)
    except Exception:
        return False


def valid_generated(out: Path, n: int) -> bool:
    from PIL import Image

    try:
        with open(out / "manifest.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        for r in rows:
            with Image.open(out / r["file"]) as im:
                im.load()
        return len(rows) == n
    except Exception:
        return False


def same_files(a: Path, b: Path, names: list[str] | None = None) -> bool:
    if names is None:
        names = sorted(str(p.relative_to(a)) for p in a.rglob("*") if p.is_file() and not p.name.startswith("."))
        other = sorted(str(p.relative_to(b)) for p in b.rglob("*") if p.is_file() and not p.name.startswith("."))
        if names != other:
            return False
    return all((a / n).read_bytes() == (b / n).read_bytes() for n in names)


def weights(ckpt: Path) -> dict:
    import torch

    ck = torch.load(ckpt, map_location="cpu", weights_only=True)
    out = {f"modules.{k}.{n}": t for k, sd in ck["modules"].items() for n, t in sd.items()}
    out.update({f"ema.{n}": t for n, t in (ck.get("ema") or {}).items()})
    out["step"] = ck["step"]
    return out


def same_weights(a: dict, b: dict) -> bool:
    import torch

    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) if hasattr(a[k], "dtype") else a[k] == b[k] for k in a)


def unit_scores(exp: Path) -> dict:
    out = {}
    for p in sorted((exp / "units").glob("*.json")):
        u = json.loads(p.read_text())
        out[p.name] = (u["fold_test"], u["test_sets"])
    return out


# --- one command ---------------------------------------------------------------------------------

class Bench:
    def __init__(self, work: Path, kills: int, seed: int) -> None:
        from xraygan.data.sample import sample_path

        self.work, self.kills = work, kills
        self.rng = np.random.default_rng(seed)
        self.env = _env(work)
        self.csv = sample_path() / "labels.csv"
        self.windows: dict[str, tuple[float, float]] = {}
        self.prepared = work / "prepared16"
        rc, _ = run_to_end(xraygan(["prepare", str(self.csv), str(self.prepared), "--size", "16", "--patient-col", "patient_id", "-q"]),
                           self.env, work / "prepared16.log")
        assert rc == 0, (work / "prepared16.log").read_text()
        self._run: Path | None = None

    def base_run(self) -> Path:
        if self._run is None:
            self._run = self.work / "gen-run"
            rc, _ = run_to_end(xraygan(["train", str(self.prepared), "--out", str(self._run), "--steps", "4", *TINY_GAN, "-q"]),
                               self.env, self.work / "gen-run.log")
            assert rc == 0, (self.work / "gen-run.log").read_text()
        return self._run

    def reference(self, name: str, cmd: list[str], d: Path, out: Path) -> list[float]:
        """Run the uninterrupted reference; the kill moments, uniform between the moment it took its
        output lock (start-up and imports before it are left out) and its end."""
        rc, total, start = reference_run(cmd, self.env, d / "ref.log", out)
        assert rc == 0, (d / "ref.log").read_text()
        self.windows[name] = (start, total)
        return list(self.rng.uniform(start, total, self.kills))

    # each returns a Tally
    def prepare(self) -> Tally:
        d = self.work / "prepare"
        d.mkdir()
        cmd = lambda out: xraygan(["prepare", str(self.csv), str(out), "--size", "16", "--patient-col", "patient_id",
                                   "--workers", "2", "--force", "-q"])
        ref = d / "ref"
        moments = self.reference("prepare", cmd(ref), d, ref)
        assert valid_prepared(ref)
        out, t = d / "out", Tally()
        for i, at in enumerate(moments):
            t.kills += 1
            t.mid_run += run_and_kill(cmd(out), self.env, d / f"kill{i}.log", at)
            t.partial_visible += out.exists() and not valid_prepared(out)
            t.leftovers_after_kill += bool(leftovers(out, lock_too=False))
            rc, s = run_to_end(cmd(out), self.env, d / f"rerun{i}.log")
            t.rerun_s.append(s)
            ok = rc == 0 and valid_prepared(out)
            t.recovered += ok
            t.identical += ok and same_files(ref, out, ["pixels.npy", "manifest.csv"])
            left = leftovers(out, lock_too=True)
            t.leftovers_after_rerun += bool(left)
            if not ok or left:
                t.notes.append(f"prepare kill {i} at {at:.2f}s: rc={rc} leftovers={left} {(d / f'rerun{i}.log').read_text()[-300:]}")
        return t

    def generate(self) -> Tally:
        d = self.work / "generate"
        d.mkdir()
        run, n = self.base_run(), 400
        cmd = lambda out: xraygan(["generate", str(run), "--n", str(n), "--out", str(out), "--batch", "16", "--device", "cpu",
                                   "--force", "-q"])
        ref = d / "ref"
        moments = self.reference("generate", cmd(ref), d, ref)
        assert valid_generated(ref, n)
        out, t = d / "out", Tally()
        for i, at in enumerate(moments):
            t.kills += 1
            t.mid_run += run_and_kill(cmd(out), self.env, d / f"kill{i}.log", at)
            t.partial_visible += out.exists() and not valid_generated(out, n)
            t.leftovers_after_kill += bool(leftovers(out, lock_too=False))
            rc, s = run_to_end(cmd(out), self.env, d / f"rerun{i}.log")
            t.rerun_s.append(s)
            ok = rc == 0 and valid_generated(out, n)
            t.recovered += ok
            t.identical += ok and same_files(ref, out)
            left = leftovers(out, lock_too=True)
            t.leftovers_after_rerun += bool(left)
            if not ok or left:
                t.notes.append(f"generate kill {i} at {at:.2f}s: rc={rc} leftovers={left} {(d / f'rerun{i}.log').read_text()[-300:]}")
        return t

    def train(self) -> Tally:
        d = self.work / "train"
        d.mkdir()
        steps = 60
        opts = ["--steps", str(steps), "--ckpt-every", "5", "--sample-every", "10", "--log-every", "2", "--keep-ckpts", "3", *TINY_GAN, "-q"]
        cmd = lambda out, *extra: xraygan(["train", str(self.prepared), "--out", str(out), *opts, *extra])
        ref = d / "ref"
        moments = self.reference("train", cmd(ref), d, ref)
        ref_w = weights(ref / "checkpoints" / "latest.pt")
        t = Tally()
        for i, at in enumerate(moments):
            out = d / f"run{i}"
            t.kills += 1
            t.mid_run += run_and_kill(cmd(out), self.env, d / f"kill{i}.log", at)
            bad = bad_pt_files(out)
            t.leftovers_after_kill += bool(leftovers(out, lock_too=False))
            if (out / "checkpoints" / "latest.pt").is_file() and (out / "config.yaml").is_file():
                again = xraygan(["train", "--resume", str(out), "-q"])
            else:
                again = cmd(out, "--force") if out.exists() else cmd(out)
            rc, s = run_to_end(again, self.env, d / f"rerun{i}.log")
            t.rerun_s.append(s)
            bad += bad_pt_files(out)
            t.bad_pt += len(bad)
            try:
                w = weights(out / "checkpoints" / "latest.pt")
            except Exception:
                w = None
            ok = rc == 0 and w is not None and w["step"] == steps
            t.recovered += ok
            t.identical += ok and same_weights(ref_w, w)
            left = leftovers(out, lock_too=True)
            t.leftovers_after_rerun += bool(left)
            if not ok or left or bad or not same_weights(ref_w, w or {}):
                t.notes.append(f"train kill {i} at {at:.2f}s ({' '.join(again[3:5])}): rc={rc} bad_pt={bad} leftovers={left} "
                               f"{(d / f'rerun{i}.log').read_text()[-300:]}")
            else:
                shutil.rmtree(out)
        return t

    def experiment(self) -> Tally:
        d = self.work / "experiment"
        d.mkdir()
        gan = d / "gan.yaml"
        gan.write_text("model: dcgan\nconditional: true\nwidth: 8\nlatent_dim: 16\nbatch: 8\nsteps: 30\nckpt_every: 5\n"
                       "sample_every: 10\nthreads: 1\n")
        cmd = lambda out: xraygan(["experiment", str(self.prepared), "--out", str(out), "--gan-config", str(gan), "--folds", "2",
                                   "--seeds", "1", "--arms", "real,real+synthetic", "--ratios", "1", "--steps", "10", "--batch", "16",
                                   "--input-size", "16", "--bootstrap", "50", "--device", "cpu", "-q"])
        ref = d / "ref"
        moments = self.reference("experiment", cmd(ref), d, ref)
        assert (ref / "results.json").is_file()
        ref_units = unit_scores(ref)
        t = Tally()
        for i, at in enumerate(moments):
            out = d / f"exp{i}"
            t.kills += 1
            t.mid_run += run_and_kill(cmd(out), self.env, d / f"kill{i}.log", at)
            bad = bad_pt_files(out)
            t.leftovers_after_kill += bool(leftovers(out, lock_too=False))
            rc, s = run_to_end(cmd(out), self.env, d / f"rerun{i}.log")
            t.rerun_s.append(s)
            bad += bad_pt_files(out)
            t.bad_pt += len(bad)
            try:
                json.loads((out / "results.json").read_text())
                units = unit_scores(out)
            except Exception:
                units = None
            ok = rc == 0 and units is not None and units.keys() == ref_units.keys()
            t.recovered += ok
            t.identical += ok and units == ref_units
            left = leftovers(out, lock_too=True)
            t.leftovers_after_rerun += bool(left)
            if not ok or left or bad or units != ref_units:
                t.notes.append(f"experiment kill {i} at {at:.2f}s: rc={rc} bad_pt={bad} leftovers={left} "
                               f"{(d / f'rerun{i}.log').read_text()[-300:]}")
            else:
                shutil.rmtree(out)
        return t


def print_table(results: dict[str, Tally], seconds: dict[str, float], windows: dict[str, tuple[float, float]]) -> None:
    cols = ["command", "kill window s", "kills", "mid-run", "partial visible", "leftovers after kill", "recovered", "identical to uninterrupted",
            "bad .pt", "leftovers after rerun", "rerun s (mean)", "wall s"]
    rows = [[name, "{:.1f}-{:.1f}".format(*windows[name]), t.kills, t.mid_run, t.partial_visible, t.leftovers_after_kill, t.recovered, t.identical, t.bad_pt,
             t.leftovers_after_rerun, f"{np.mean(t.rerun_s):.1f}" if t.rerun_s else "-", f"{seconds[name]:.0f}"]
            for name, t in results.items()]
    print("| " + " | ".join(cols) + " |")
    print("|" + "|".join("---" for _ in cols) + "|")
    for r in rows:
        print("| " + " | ".join(str(v) for v in r) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, default=20, help="random kill -9 moments per command")
    p.add_argument("--commands", default=",".join(COMMANDS), help=f"comma-separated subset of {','.join(COMMANDS)}")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    p.add_argument("--keep", metavar="DIR", help="work in DIR (must not exist) and keep it, instead of a temporary folder")
    args = p.parse_args()
    commands = [c.strip() for c in args.commands.split(",") if c.strip()]
    bad = [c for c in commands if c not in COMMANDS]
    if bad:
        p.error(f"--commands: unknown {', '.join(bad)}; choose from {', '.join(COMMANDS)}")
    tmp = None
    if args.keep:
        work = Path(args.keep)
        work.mkdir(parents=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="xraygan-faults-")
        work = Path(tmp.name)
    t0 = time.perf_counter()
    bench = Bench(work, args.kills, args.seed)
    results, seconds = {}, {}
    for c in commands:
        t = time.perf_counter()
        results[c] = getattr(bench, c)()
        seconds[c] = time.perf_counter() - t
        lo, hi = bench.windows[c]
        print(f"{c}: done in {seconds[c]:.0f} s (kill window {lo:.1f}-{hi:.1f} s after start)", flush=True)
    print(f"\n`python benchmarks/faults.py {' '.join(sys.argv[1:])}` on {os.cpu_count()} CPUs, 1-min load "
          f"{os.getloadavg()[0]:.1f}, total {time.perf_counter() - t0:.0f} s\n")
    print_table(results, seconds, bench.windows)
    notes = [n for t in results.values() for n in t.notes]
    if notes:
        print("\nnot recovered / not identical / leftovers:")
        for n in notes:
            print("  " + " ".join(n.split()))
    if tmp is not None and not notes:
        tmp.cleanup()
    elif tmp is not None:
        print(f"\nkept for inspection: {work}")


if __name__ == "__main__":
    main()
