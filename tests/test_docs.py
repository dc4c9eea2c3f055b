"""The documentation cannot drift from the code: README.md's quick start runs verbatim, every
``xraygan ...`` command line shown in README.md and docs/*.md parses, and relative links resolve.

Which command lines are checked (the rule, also for new docs):

* every line of a ```bash block that starts with ``xraygan `` (after joining ``\\`` continuations
  and dropping ``# comments``) is a full command: it must parse (below);
* an inline code span that starts with ``xraygan `` and a lower-case word (``xraygan generate
  --format dicom`` in prose) is a fragment: its command and every ``--option`` in it must exist;
* skipped: lines with ``...`` (an elided part), ``|`` (alternatives, e.g. ``onnx|pt2``) or ``[``
  (optional parts, e.g. ``presets [NAME]``): they are not full commands;
* a placeholder, an all-capitals word such as ``RUN``, ``PREPARED``, ``DIR`` or ``N``, is replaced
  by one fixed value per name (``PLACEHOLDERS``), the same everywhere.

Each line runs through ``xraygan.cli.main`` with ``--print-config`` appended (which reads no
input), and must exit 0. ``--help`` lines must exit 0 too.
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from xraygan.cli import main

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PLACEHOLDERS = {"N": "4", "K": "1000", "PSI": "0.7", "L": "NORMAL", "NAME": "pediatric-cxr-64",
                "FILE": "doc-out.safetensors", "CFG": "dcgan-64", "M": "dcgan"}
SKIP = ("...", "|", "[")


def _placeholder(word: str) -> str:
    if word in PLACEHOLDERS:
        return PLACEHOLDERS[word]
    return "doc-" + word.lower().replace("_", "-")


def _bash_lines(text: str):
    for block in re.findall(r"```(?:bash|sh|shell)\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            yield line


def documented_commands() -> list[tuple[str, str]]:
    """(where, command line) for every full ``xraygan`` command line of the docs' bash blocks."""
    found = []
    for path in DOCS:
        for line in _bash_lines(path.read_text()):
            line = line.strip()
            if line.startswith("xraygan ") and not any(s in line for s in SKIP):
                found.append((path.relative_to(ROOT).as_posix(), line))
    return found


def documented_fragments() -> list[tuple[str, str]]:
    """(where, span) for every inline ``xraygan COMMAND ...`` code span of the docs."""
    found = []
    for path in DOCS:
        for span in re.findall(r"`(xraygan [a-z][a-z-]*[^`\n]*)`", path.read_text()):
            found.append((path.relative_to(ROOT).as_posix(), span.replace("\\|", "|")))
    return found


def to_argv(line: str) -> list[str]:
    words = shlex.split(line, comments=True)[1:]
    return [_placeholder(w) if re.fullmatch(r"[A-Z][A-Z0-9_]*", w) else w for w in words]


def test_the_rule_finds_the_documented_commands():
    found = documented_commands()
    commands = {to_argv(line)[0] for _, line in found}
    assert len(found) >= 30 and len(documented_fragments()) >= 20, found
    assert {"prepare", "train", "generate", "evaluate", "experiment", "report", "export", "pretrained", "demo"} <= commands
    assert to_argv("xraygan generate RUN --n N --out DIR  # x") == ["generate", "doc-run", "--n", "4", "--out", "doc-dir"]


@pytest.mark.parametrize("where,line", documented_commands(), ids=lambda v: v if "/" in v or v.endswith(".md") else None)
def test_documented_command_parses(where, line, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # --print-config reads no input; a stray write would land here
    argv = to_argv(line)
    try:
        rc = main(argv if "--help" in argv else [*argv, "--print-config"])
    except SystemExit as e:  # --help
        rc = e.code or 0
    err = capsys.readouterr().err
    assert rc == 0, f"{where}: `{line}` -> exit {rc}: {err.strip()}"


def _subcommand_options() -> dict[str, set[str]]:
    from xraygan.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {name: set(p._option_string_actions) for name, p in sub.choices.items()}


@pytest.mark.parametrize("where,span", documented_fragments(), ids=lambda v: v if "/" in v or v.endswith(".md") else None)
def test_documented_fragment_names_real_options(where, span):
    options = _subcommand_options()
    words = span.split()
    assert words[1] in options, f"{where}: `{span}`: no command {words[1]!r}"
    unknown = [w.split("=")[0] for w in words[2:] if w.startswith("--") and w.split("=")[0] not in options[words[1]]]
    assert not unknown, f"{where}: `{span}`: unknown options {unknown}"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_relative_links_resolve(doc):
    text = doc.read_text()
    bad = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (doc.parent / file).resolve() if file else doc
        if not dest.exists():
            bad.append(target)
        elif anchor and dest.suffix == ".md":
            heads = re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", dest.read_text(), flags=re.S), flags=re.M)
            if anchor not in {_slug(h) for h in heads}:
                bad.append(target)
    assert not bad, f"{doc.name}: broken links {bad}"


def test_readme_has_no_unlabelled_shared_paths():
    """Examples use paths a fresh clone has; the maintainers' data is named as such where it appears."""
    for doc in DOCS:
        for line in doc.read_text().splitlines():
            if "../shared" in line:
                assert "maintainers'" in line or "maintainers'" in _context(doc, line), f"{doc.name}: {line}"


def _context(doc: Path, line: str) -> str:
    lines = doc.read_text().splitlines()
    i = lines.index(line)
    return "\n".join(lines[max(0, i - 3): i + 1])


def quick_start() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "README.md's Quick start should hold one bash block"
    return blocks[0]


def test_setup_command_2_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    cmd = ci.split("# --- README, set-up command 2 ---\n", 1)[1].splitlines()[0]
    assert cmd in readme


def test_readme_quick_start_runs_verbatim(tmp_path):
    """The quick start, run from a stand-in for a fresh clone: ``src/`` and ``.venv`` linked in."""
    venv = Path(sys.prefix)
    if not (venv / "bin" / "activate").is_file() or shutil.which("bash") is None:
        pytest.skip("needs a virtual environment with bin/activate and bash")
    (tmp_path / "src").symlink_to(ROOT / "src", target_is_directory=True)
    (tmp_path / ".venv").symlink_to(venv, target_is_directory=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "XRAYGAN_CACHE": str(tmp_path / "cache"),
           "XRAYGAN_PATIENT_KEY_FILE": str(tmp_path / "patient.key")}
    t0 = time.perf_counter()
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", quick_start()], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    for p in ("data/sample/dataset.json", "runs/sample/checkpoints/latest.pt", "synthetic/manifest.csv", "report.html"):
        assert (tmp_path / p).is_file(), p
    assert list((tmp_path / "runs" / "sample" / "eval").glob("*.json"))
    print(f"quick start: {time.perf_counter() - t0:.1f} s")
