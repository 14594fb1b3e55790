"""Compatibility matrix of hf_lrschedule over Python interpreters x transformers versions (issue 10).

For each cell (interpreter, transformers version) it builds a venv, installs torch, that transformers and the
package from a source tree (the repo by default, so the start-up hook `hf_lrschedule.pth` is installed the way
users get it), and runs four checks in the venv, each in its own process:

  registration  `from transformers import Trainer, TrainingArguments; TrainingArguments(...,
                lr_scheduler_type="linear_refined")` in a process that never imports hf_lrschedule itself
  stock script  tests/scripts/stock_train.py (HfArgumentParser + Trainer, no hf_lrschedule import) with
                `--lr_scheduler_type linear_refined`: its logged LRs are the refined schedule, and its
                `training_args.bin` unpickles in a fresh process
  10-step run   Trainer on a tiny Llama for 10 steps: every logged LR is base LR x the refined multiplier
  resume        a run saving checkpoint-5, then (norms file deleted) a resume from it: steps 6..10 log the
                bit-identical LRs of the uninterrupted run

Results go to results/compat.json and results/compat.md (rewritten atomically after every cell).

The default matrix is cheap: every interpreter x the newest transformers, plus 3.11 x every transformers version;
an interpreter that the newest transformers' `requires-python` excludes also gets the newest release it accepts.
`--full` runs the cross product. Cells whose transformers release excludes the interpreter by `requires-python`
are listed as "excluded by metadata" and not built.

Torch: `torch==2.13.0` on 3.11 comes from the local CPU wheel (/opt/wheels, via pip's find-links); on other
interpreters PyPI has only the CUDA build of Linux torch (+cu130) with its nvidia-* dependencies: ~1.4 GB to
download (torch, cudnn, nccl, triton; the other nvidia wheels are on the local mirror), 4.7 GB installed, 4-6
minutes. A CUDA wheel installed with --no-deps does not import (ImportError: libcudnn.so.9), and pip's HTTP cache
kept none of these downloads here, so torch goes once per interpreter into a shared venv under --venv-dir that every
cell venv of that interpreter sees through a .pth line, and that later runs reuse (--no-share-torch: one torch per
cell). `--torch-index-url https://download.pytorch.org/whl/cpu` gets the small CPU build where that index is
reachable.

Examples:
    python scripts/check_compat.py                       # default matrix (8 cells, 1 excluded), fresh venvs
    python scripts/check_compat.py --reuse               # keep built venvs, reinstall only the package
    python scripts/check_compat.py --full --reuse
    python scripts/check_compat.py --pythons 3.10 --transformers 5.0.0,latest
    python scripts/check_compat.py --git-ref HEAD        # test a committed tree instead of the working tree

Stdlib only; runs under any Python >= 3.8. Never installs into the interpreter that runs it.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_VENV_DIR = Path(tempfile.gettempdir()) / "hf_lrschedule_compat"
DEFAULT_TRANSFORMERS = "5.0.0,5.6.*,5.16.1,latest"
DEFAULT_TORCH = "2.13.0"
ANCHOR_PYTHON = "3.11"  # the interpreter that is crossed with every transformers version in the default matrix
CHECKS = ("registration", "stock_script", "ten_step_run", "resume", "broken_glue")
HEADERS = {
    "registration": "registration", "stock_script": "stock script", "ten_step_run": "10-step run", "resume": "resume",
    "broken_glue": "broken glue",
}
EXCLUDED = "excluded by metadata"
MARKER = "compat_marker.json"

# ----------------------------------------------------------------------------------------------------------------
# Checks: run inside a cell's venv as `python check_compat.py --run-check NAME WORKDIR SOURCE RESULT_FILE`.
# Only the stdlib is imported at module level, so the registration check sees exactly what a user script sees.
# ----------------------------------------------------------------------------------------------------------------

NORMS = [3.0, 2.5, 1.0, 0.9, 1.1, 1.0, 1.2, 1.4, 1.3, 1.5, 1.6, 1.8]  # an early spike, then rising norms
BASE_LR = 1e-2
STEPS = 10


def _tiny_model():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=128, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config)


def _tiny_dataset(num_windows=64, seq_len=16):
    import torch

    generator = torch.Generator().manual_seed(0)
    data = torch.randint(0, 128, (num_windows, seq_len), generator=generator)

    class Windows(torch.utils.data.Dataset):
        def __len__(self):
            return num_windows

        def __getitem__(self, index):
            return {"input_ids": data[index], "labels": data[index].clone()}

    return Windows()


def _write_norms(workdir):
    from hf_lrschedule import GradNormRecorder

    recorder = GradNormRecorder(os.path.join(workdir, "norms.json"), meta={"optimizer": "AdamW", "optimizer_family": "adam"})
    for step, value in enumerate(NORMS, start=1):
        recorder.record(step, value)
    return str(recorder.save())


def _expected_lrs(steps):
    """LR logged at optimizer step s = 1..steps: base LR x refined multiplier of scheduler step s - 1."""
    from hf_lrschedule import linear_decay, refine_schedule

    multipliers = [float(m) for m in refine_schedule(NORMS, steps, smoothing=0.0, guard="none")]
    linear = [linear_decay(t, num_training_steps=steps) for t in range(steps)]
    assert multipliers != linear, "test norms give a plain linear schedule: the check could not tell them apart"
    return {s: BASE_LR * multipliers[s - 1] for s in range(1, steps + 1)}


def _compare_lrs(got, expected, what):
    missing = sorted(set(expected) - set(got))
    if missing:
        raise AssertionError(f"{what}: no learning_rate logged at steps {missing} (logged: {sorted(got)})")
    bad = [(s, got[s], expected[s]) for s in sorted(expected) if abs(got[s] - expected[s]) > 1e-12 * max(abs(expected[s]), 1e-30)]
    if bad:
        s, g, e = bad[0]
        raise AssertionError(f"{what}: {len(bad)} of {len(expected)} logged LRs differ from the refined schedule, "
                             f"first at step {s}: {g!r} != {e!r} (linear fallback or another schedule ran)")


def _training_args(workdir, **overrides):
    from transformers import TrainingArguments

    kwargs = dict(
        output_dir=os.path.join(workdir, "out"), max_steps=STEPS, per_device_train_batch_size=4,
        learning_rate=BASE_LR, logging_steps=1, report_to="none", save_strategy="no", disable_tqdm=True,
        lr_scheduler_type="linear_refined", seed=0, data_seed=0, use_cpu=True,
    )
    kwargs.update(overrides)
    return TrainingArguments(**kwargs)


def _logged_lrs(trainer):
    return {e["step"]: e["learning_rate"] for e in trainer.state.log_history if "learning_rate" in e}


def check_registration(workdir, source):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from transformers import Trainer, TrainingArguments  # noqa: F401  (the import a user script does)

        args = TrainingArguments(output_dir=os.path.join(workdir, "out"), lr_scheduler_type="linear_refined", report_to="none")
    from transformers.optimization import TYPE_TO_SCHEDULER_FUNCTION
    from transformers.trainer_utils import SchedulerType

    assert args.lr_scheduler_type is SchedulerType("linear_refined"), repr(args.lr_scheduler_type)
    assert args.lr_scheduler_type in TYPE_TO_SCHEDULER_FUNCTION, "SchedulerType has the member but no factory"
    hook_warnings = [f"{w.category.__name__}: {w.message}" for w in caught if "hf_lrschedule" in str(w.message)]
    assert not hook_warnings, hook_warnings[0]
    return {"scheduler_type": repr(args.lr_scheduler_type)}


def check_stock_script(workdir, source):
    norms_file = _write_norms(workdir)
    result_file = os.path.join(workdir, "stock_result.json")
    out = os.path.join(workdir, "out")
    steps = 8
    command = [
        sys.executable, os.path.join(source, "tests", "scripts", "stock_train.py"),
        "--output_dir", out, "--max_steps", str(steps), "--per_device_train_batch_size", "4",
        "--learning_rate", str(BASE_LR), "--logging_steps", "1", "--report_to", "none", "--disable_tqdm", "true",
        "--use_cpu", "true", "--lr_scheduler_type", "linear_refined", "--result_file", result_file,
        "--lr_scheduler_kwargs", json.dumps({"grad_norms": norms_file, "smoothing": 0.0, "guard": "none"}),
        "--save_strategy", "steps", "--save_steps", "4",
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-6000:])
        raise RuntimeError(f"stock_train.py exited {proc.returncode}: {_error_line(proc.stderr)}")
    with open(result_file) as handle:
        result = json.load(handle)
    _compare_lrs({int(k): v for k, v in result["lrs"].items()}, _expected_lrs(steps), "stock_train.py")
    # training_args.bin (a pickle naming SchedulerType.LINEAR_REFINED) loads in a fresh process
    bin_file = os.path.join(out, "checkpoint-4", "training_args.bin")
    load = subprocess.run(
        [sys.executable, "-c", "import sys, torch; print(torch.load(sys.argv[1], weights_only=False).lr_scheduler_type.value)",
         bin_file], capture_output=True, text=True, timeout=600, check=False,
    )
    if load.returncode != 0 or load.stdout.strip().splitlines()[-1:] != ["linear_refined"]:
        sys.stderr.write(load.stderr[-6000:])
        raise RuntimeError(f"training_args.bin does not unpickle to linear_refined: {_error_line(load.stderr) or load.stdout[-300:]}")
    return {"steps": steps}


def check_ten_step_run(workdir, source):
    import math

    from transformers import Trainer

    norms_file = _write_norms(workdir)
    args = _training_args(workdir, lr_scheduler_kwargs={"grad_norms": norms_file, "smoothing": 0.0, "guard": "none"})
    trainer = Trainer(model=_tiny_model(), args=args, train_dataset=_tiny_dataset())
    trainer.train()
    assert trainer.state.global_step == STEPS, f"global_step {trainer.state.global_step} != {STEPS}"
    _compare_lrs(_logged_lrs(trainer), _expected_lrs(STEPS), "Trainer")
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert losses and all(math.isfinite(v) for v in losses), f"losses {losses}"
    return {"first_loss": losses[0], "last_loss": losses[-1]}


def check_resume(workdir, source):
    from transformers import Trainer, TrainerCallback

    class CountSteps(TrainerCallback):
        steps = 0

        def on_step_end(self, args, state, control, **kwargs):
            CountSteps.steps += 1

    norms_file = _write_norms(workdir)
    kwargs = {"grad_norms": norms_file, "smoothing": 0.2}
    args = _training_args(workdir, lr_scheduler_kwargs=kwargs, save_strategy="steps", save_steps=5)
    straight = Trainer(model=_tiny_model(), args=args, train_dataset=_tiny_dataset())
    straight.train()
    os.unlink(norms_file)  # a resume must not need the source any more: scheduler.pt holds the table
    resumed = Trainer(model=_tiny_model(), args=args, train_dataset=_tiny_dataset(), callbacks=[CountSteps()])
    resumed.train(resume_from_checkpoint=os.path.join(args.output_dir, "checkpoint-5"))
    assert CountSteps.steps == STEPS - 5, f"the resumed run took {CountSteps.steps} steps, not {STEPS - 5}"
    # the resumed log_history starts with the checkpoint's entries (steps 1..5); 6..10 are the resumed run's
    a, b = _logged_lrs(straight), _logged_lrs(resumed)
    missing = [s for s in range(6, STEPS + 1) if s not in b]
    assert not missing, f"resumed run logged no learning_rate at steps {missing}"
    diff = [(s, a.get(s), b[s]) for s in range(6, STEPS + 1) if a.get(s) != b[s]]
    assert not diff, f"resumed LRs differ (step, straight, resumed): {diff}"
    assert len(set(a.values())) > 2, f"uninterrupted run logged a constant LR: {a}"
    return {"lrs_6_to_10": [b[s] for s in range(6, STEPS + 1)]}


def check_broken_glue(workdir, source):
    """With the glue module raising at import, `from transformers import Trainer` still works (one warning)."""
    import importlib.util
    import shutil

    installed = importlib.util.find_spec("hf_lrschedule").submodule_search_locations[0]
    site = os.path.join(workdir, "broken_site")
    shutil.rmtree(site, ignore_errors=True)
    shutil.copytree(installed, os.path.join(site, "hf_lrschedule"), ignore=shutil.ignore_patterns("__pycache__"))
    with open(os.path.join(site, "hf_lrschedule", "integrations", "transformers.py"), "a") as handle:
        handle.write("\nraise RuntimeError('simulated broken glue module')\n")
    code = (
        "from transformers import Trainer, TrainingArguments\n"
        "from transformers.trainer_utils import SchedulerType\n"
        "assert 'linear_refined' not in [m.value for m in SchedulerType]\n"
        "TrainingArguments(output_dir='out', lr_scheduler_type='linear', report_to='none')\n"
        "print('TRANSFORMERS OK')\n"
    )
    env = dict(os.environ, PYTHONPATH=site)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env, cwd=workdir, check=False
    )
    if proc.returncode != 0 or "TRANSFORMERS OK" not in proc.stdout:
        sys.stderr.write(proc.stderr[-6000:])
        raise RuntimeError(f"transformers broke with a broken glue module: {_error_line(proc.stderr)}")
    warnings = [line for line in proc.stderr.splitlines() if "RegistrationWarning" in line]
    assert len(warnings) == 1 and "HF_LRSCHEDULE_AUTOREGISTER=0" in warnings[0], proc.stderr[-2000:]
    return {"warning": warnings[0][-300:]}


def _run_check(name, workdir, source, result_file):
    import traceback

    start = time.monotonic()
    try:
        details = globals()[f"check_{name}"](workdir, source)
        result = {"ok": True, "details": details}
    except BaseException as error:  # noqa: BLE001 - report everything, SystemExit from argparse included
        traceback.print_exc()
        result = {"ok": False, "error": _describe(error)}
    result["seconds"] = round(time.monotonic() - start, 1)
    try:
        from importlib.metadata import version

        result["versions"] = {p: version(p) for p in ("transformers", "torch", "accelerate", "huggingface_hub", "hf_lrschedule")}
        if "torch" in sys.modules:  # the build tag (+cpu, +cu130) is in __version__, not in the metadata
            result["versions"]["torch"] = sys.modules["torch"].__version__
    except Exception as error:  # noqa: BLE001
        result["versions"] = {"error": repr(error)}
    with open(result_file, "w") as handle:
        json.dump(result, handle)
    return 0 if result["ok"] else 1


# ----------------------------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------------------------

_ERROR_RE = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Warning|Interrupt|Exit)|AssertionError)(:|$)")


_CHAINED = ("The above exception was the direct cause", "During handling of the above exception")


def _describe(error):
    """`Type: message` of an exception, plus its root cause when it is chained (transformers' lazy imports wrap
    the real error in `ModuleNotFoundError: Could not import module 'Trainer'`)."""
    text = f"{type(error).__name__}: {error}"
    root, seen = error, set()
    while (root.__cause__ or root.__context__) is not None and id(root) not in seen:
        seen.add(id(root))
        root = root.__cause__ or root.__context__
    if root is not error:
        text += f" (root cause: {type(root).__name__}: {root})"
    return text


def _error_line(stderr):
    """The exception line of a traceback (the last line naming an error), else the last non-empty line; for a
    chained traceback also the first exception printed (the root cause)."""
    lines = [line.strip() for line in (stderr or "").splitlines() if line.strip()]
    errors = [i for i, line in enumerate(lines) if _ERROR_RE.match(line) or line.startswith("ERROR:")]
    if not errors:
        return lines[-1] if lines else ""
    last = lines[errors[-1]]
    chain = [i for i, line in enumerate(lines) if line.startswith(_CHAINED)]
    if chain:
        roots = [i for i in errors if i < chain[0]]
        if roots and lines[roots[-1]] != last:
            return f"{last} (root cause: {lines[roots[-1]]})"
    return last


def _atomic_write(path, text):
    from hf_lrschedule.sources import atomic_write_text  # the driver runs where the package is installed

    atomic_write_text(path, text)


def _log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _run(command, log_file, timeout, env=None, cwd=None):
    """Run command, append its output to log_file; return (returncode, output)."""
    start = time.monotonic()
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd, check=False)
        code, output = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as error:
        code = 124
        output = f"{error.stdout or ''}{error.stderr or ''}\nTIMEOUT after {timeout}s"
        if isinstance(output, bytes):
            output = output.decode(errors="replace")
    with open(log_file, "a", encoding="utf-8") as handle:
        handle.write(f"\n$ {' '.join(map(str, command))}\n{output}\n[exit {code} after {time.monotonic() - start:.1f}s]\n")
    return code, output


# -- packaging helpers (packaging if importable, else pip's vendored copy) ---------------------------------------

def _packaging():
    try:
        from packaging.specifiers import SpecifierSet
        from packaging.version import Version
    except ImportError:
        from pip._vendor.packaging.specifiers import SpecifierSet
        from pip._vendor.packaging.version import Version
    return SpecifierSet, Version


def fetch_release_index(index_url, project="transformers"):
    """{version: requires_python or ""} from a PEP 691 JSON simple index (yanked files skipped)."""
    url = f"{index_url.rstrip('/')}/{project}/"
    request = urllib.request.Request(url, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        data = json.load(response)
    releases = {}
    pattern = re.compile(rf"^{project}-([^-]+)(-py3-none-any\.whl|\.tar\.gz)$")
    for entry in data.get("files", []):
        match = pattern.match(entry["filename"])
        if not match or entry.get("yanked"):
            continue
        requires = entry.get("requires-python") or ""
        if match.group(1) not in releases or match.group(2).endswith(".whl"):
            releases[match.group(1)] = requires
    return releases


def resolve_transformers(specs, releases):
    """'5.0.0' -> itself; '5.6.*' / '5.6.x' -> newest 5.6 release; 'latest' -> newest final release."""
    _, Version = _packaging()
    finals = sorted((v for v in releases if not Version(v).is_prerelease), key=Version)
    resolved = []
    for spec in specs:
        if spec == "latest":
            version = finals[-1] if finals else None
        elif spec.endswith((".*", ".x")):
            prefix = spec[:-2] + "."
            matching = [v for v in finals if v.startswith(prefix)]
            version = matching[-1] if matching else None
        else:
            version = spec
        if version is None:
            raise SystemExit(f"no transformers release matches {spec!r}")
        if releases and version not in releases:
            raise SystemExit(f"transformers {version} is not on the index")
        if version not in resolved:
            resolved.append(version)
    return resolved


def python_allowed(requires_python, python_version):
    if not requires_python:
        return True
    SpecifierSet, _ = _packaging()
    return python_version in SpecifierSet(requires_python)


def newest_accepting(releases, python_version):
    _, Version = _packaging()
    finals = sorted((v for v in releases if not Version(v).is_prerelease), key=Version)
    ok = [v for v in finals if python_allowed(releases[v], python_version)]
    return ok[-1] if ok else None


# -- interpreters --------------------------------------------------------------------------------------------------

def pyenv_root():
    try:
        out = subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=30, check=False).stdout.strip()
        if out:
            return Path(out)
    except (OSError, subprocess.SubprocessError):
        pass
    return Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))


def discover_pythons(wanted):
    """[(version, path)]: interpreters under `pyenv root`/versions (>= 3.10 unless named), or explicit paths."""
    root = pyenv_root() / "versions"
    found = {}
    if root.is_dir():
        for entry in sorted(root.iterdir()):
            exe = entry / "bin" / "python"
            if re.fullmatch(r"\d+\.\d+\.\d+", entry.name) and exe.exists():
                found[entry.name] = exe
    chosen = []
    if not wanted:
        chosen = [(v, p) for v, p in found.items() if tuple(map(int, v.split(".")[:2])) >= (3, 10)]
    for item in wanted or []:
        if os.sep in item:  # a path to an interpreter
            version = subprocess.run([item, "-c", "import platform; print(platform.python_version())"],
                                     capture_output=True, text=True, check=True).stdout.strip()
            chosen.append((version, Path(item)))
            continue
        matches = [(v, p) for v, p in found.items() if v == item or v.startswith(item + ".")]
        if not matches:
            raise SystemExit(f"no interpreter {item} under {root} (found: {', '.join(found) or 'none'})")
        chosen.append(max(matches, key=lambda vp: tuple(map(int, vp[0].split(".")))))
    key = lambda vp: tuple(map(int, vp[0].split(".")))
    return sorted(dict(chosen).items(), key=key)


def minor(version):
    return ".".join(version.split(".")[:2])


# -- the matrix ----------------------------------------------------------------------------------------------------

def build_matrix(pythons, versions, releases, full):
    """[(python_version, python_path, transformers_version, why)] in run order (cheap 3.11 cells first)."""
    _, Version = _packaging()
    newest = max(versions, key=Version)
    cells = []

    def add(py, path, tf, why):
        if not any(c[0] == py and c[2] == tf for c in cells):
            cells.append((py, path, tf, why))

    for py, path in pythons:
        for tf in versions:
            if full or tf == newest:
                add(py, path, tf, "cross product" if full else "every interpreter x newest")
            elif minor(py) == ANCHOR_PYTHON:
                add(py, path, tf, f"{ANCHOR_PYTHON} x every version")
        if releases and not python_allowed(releases.get(newest, ""), py):
            fallback = newest_accepting(releases, py)
            if fallback:
                add(py, path, fallback, f"newest release accepting Python {minor(py)}")
    order = lambda c: (minor(c[0]) != ANCHOR_PYTHON, tuple(map(int, c[0].split("."))), Version(c[2]))
    return sorted(cells, key=order)


# -- source tree ---------------------------------------------------------------------------------------------------

def _git(source, *args):
    try:
        proc = subprocess.run(["git", "-C", str(source), *args], capture_output=True, text=True, timeout=60, check=False)
        return proc.stdout.strip() if proc.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def prepare_source(args):
    """(source path, description dict). --git-ref exports that commit's tree (git archive) under the venv dir."""
    if args.git_ref:
        commit = _git(REPO, "rev-parse", "--verify", f"{args.git_ref}^{{commit}}")
        if not commit:
            raise SystemExit(f"unknown git ref {args.git_ref!r}")
        target = Path(args.venv_dir) / f"src-{commit[:12]}"
        if not (target / "pyproject.toml").exists():
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", commit], capture_output=True, check=True)
            subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
        return target, {"path": str(target), "git_ref": args.git_ref, "commit": commit, "working_tree": False}
    source = Path(args.source).resolve()
    status = _git(source, "status", "--porcelain", "--untracked-files=all", "--", "hf_lrschedule", "_hf_lrschedule_autoregister.py",
                  "hf_lrschedule.pth", "pyproject.toml", "tests/scripts/stock_train.py", "tests/tiny.py")
    digest = hashlib.sha256()
    for rel in sorted(p.relative_to(source).as_posix() for p in (source / "hf_lrschedule").rglob("*.py")) + [
        "_hf_lrschedule_autoregister.py", "hf_lrschedule.pth", "pyproject.toml"
    ]:
        path = source / rel
        if path.exists():
            digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return source, {
        "path": str(source), "commit": _git(source, "rev-parse", "HEAD"), "working_tree": True,
        "uncommitted_package_changes": status.splitlines() if status else [],
        "package_sources_sha256": digest.hexdigest()[:16],
    }


# -- one cell ------------------------------------------------------------------------------------------------------

def _venv_python(venv):
    return venv / "bin" / "python"


def _pip_failure_is_metadata(output):
    return "Requires-Python" in output or "requires a different Python" in output


def _site_packages(python):
    return subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()


def _new_venv(py_path, venv, log_file, args):
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    code, output = _run([str(py_path), "-m", "venv", str(venv)], log_file, 600)
    if code == 0:
        code, output = _run([str(_venv_python(venv)), "-m", "pip", "install", "-q", "--upgrade", "pip"], log_file, args.pip_timeout)
    return code, output


def _torch_command(python, args):
    command = [python, "-m", "pip", "install", f"torch=={args.torch}"]
    if args.torch_index_url:
        command += ["--index-url", args.torch_index_url]
    return command


def shared_torch(py, py_path, args, log_file):
    """The venv holding torch (and its nvidia-* wheels) for interpreter `py`, built once and reused.

    Cell venvs see it through a .pth line appended to their sys.path: torch is installed once per interpreter
    (the CUDA build is ~4.7 GB installed) and pip in the cell venv counts it as installed.
    Returns (site-packages path or None, seconds spent building, error or None).
    """
    tag = args.torch + ("-" + hashlib.sha256(args.torch_index_url.encode()).hexdigest()[:8] if args.torch_index_url else "")
    base = Path(args.venv_dir) / "torch" / f"py{py}-torch{tag}"
    marker = base / MARKER
    wanted = {"python": py, "torch": args.torch, "torch_index_url": args.torch_index_url or ""}
    if marker.exists() and _venv_python(base).exists():
        try:
            if json.loads(marker.read_text()) == wanted:
                return _site_packages(str(_venv_python(base))), 0.0, None
        except ValueError:
            pass
    _log(f"    building the shared torch venv {base}")
    start = time.monotonic()
    code, output = _new_venv(py_path, base, log_file, args)
    if code == 0:
        code, output = _run(_torch_command(str(_venv_python(base)), args), log_file, args.pip_timeout)
    seconds = round(time.monotonic() - start, 1)
    if code != 0:
        return None, seconds, f"pip install torch=={args.torch} failed: {_error_line(output)}"
    _atomic_write(marker, json.dumps(wanted))
    return _site_packages(str(_venv_python(base))), seconds, None


def setup_cell(cell, source, args, log_file):
    """Build or refresh the venv. Returns (venv, info dict); info["excluded"] / info["error"] on failure."""
    py, py_path, tf, _ = cell
    venv = Path(args.venv_dir) / "venvs" / f"py{py}-tf{tf}"
    python = str(_venv_python(venv))
    marker_file = venv / MARKER
    wanted = {"python": py, "transformers": tf, "torch": args.torch, "torch_index_url": args.torch_index_url or "",
              "shared_torch": args.share_torch}
    info = {"venv": str(venv)}
    timings = {}
    marker = None
    if marker_file.exists():
        try:
            marker = json.loads(marker_file.read_text())
        except ValueError:
            marker = None
    torch_site = None
    if args.share_torch:
        torch_site, seconds, error = shared_torch(py, py_path, args, log_file)
        if seconds:
            timings["shared_torch_build"] = seconds
        if error:
            info.update(error=error, timings=timings)
            return venv, info
    reuse = args.reuse and marker == wanted and _venv_python(venv).exists()
    if reuse:
        start = time.monotonic()
        code, output = _run([python, "-m", "pip", "install", "--no-deps", "--force-reinstall", str(source)], log_file, args.pip_timeout)
        timings["package"] = round(time.monotonic() - start, 1)
        info.update(reused=True, timings=timings)
        if code != 0:
            info["error"] = f"pip install of the package failed: {_error_line(output)}"
        return venv, info

    start = time.monotonic()
    code, output = _new_venv(py_path, venv, log_file, args)
    timings["venv"] = round(time.monotonic() - start, 1)
    if code != 0:
        info.update(error=f"venv creation failed: {_error_line(output)}", timings=timings)
        return venv, info

    start = time.monotonic()
    if torch_site:
        # after the venv's own site-packages on sys.path: anything pip installs here shadows the shared copy
        Path(_site_packages(python), "_compat_shared_torch.pth").write_text(torch_site + "\n")
    else:
        code, output = _run(_torch_command(python, args), log_file, args.pip_timeout)
        timings["torch"] = round(time.monotonic() - start, 1)
        if code != 0:
            info.update(error=f"pip install torch=={args.torch} failed: {_error_line(output)}", timings=timings)
            return venv, info

    start = time.monotonic()
    # one resolver run for transformers and the package, so the package's own pins take part
    code, output = _run([python, "-m", "pip", "install", f"transformers=={tf}", f"torch=={args.torch}", str(source)],
                        log_file, args.pip_timeout)
    timings["transformers_and_package"] = round(time.monotonic() - start, 1)
    info.update(reused=False, timings=timings)
    if code != 0:
        if _pip_failure_is_metadata(output):
            info["excluded"] = f"{EXCLUDED}: {_error_line(output)}"
        else:
            info["error"] = f"pip install transformers=={tf} + package failed: {_error_line(output)}"
        return venv, info
    _atomic_write(marker_file, json.dumps(wanted))
    return venv, info


def run_checks(venv, source, cell_dir, args, log_file):
    results = {}
    env = dict(os.environ)
    for key in ("PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"):
        env.pop(key, None)
    # tiny.py (tests/) and what it imports from scripts/ in newer trees, for stock_train.py; never the repo root
    env["PYTHONPATH"] = os.pathsep.join([str(source / "tests"), str(source / "scripts")])
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", WANDB_DISABLED="true", CUDA_VISIBLE_DEVICES="",
               PYTHONDONTWRITEBYTECODE="1", PYTHONNOUSERSITE="1")
    env.pop("HF_LRSCHEDULE_AUTOREGISTER", None)
    env.pop("HF_LRSCHEDULE_PHASE", None)
    for name in CHECKS:
        workdir = cell_dir / name
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        result_file = workdir / "result.json"
        command = [str(_venv_python(venv)), str(Path(__file__).resolve()), "--run-check", name, str(workdir), str(source), str(result_file)]
        start = time.monotonic()
        code, output = _run(command, log_file, args.check_timeout, env=env, cwd=str(workdir))
        seconds = round(time.monotonic() - start, 1)
        if result_file.exists():
            result = json.loads(result_file.read_text())
        else:
            result = {"ok": False, "error": _error_line(output) or f"exit {code}"}
        if not result["ok"]:
            warning = [line.strip() for line in output.splitlines() if "RegistrationWarning" in line]
            if warning and warning[0] not in result["error"]:
                result["error"] += f" [{warning[0]}]"
            result["output_tail"] = output[-4000:]
        result["wall_s"] = seconds
        results[name] = result
        _log(f"    {name}: {'pass' if result['ok'] else 'FAIL: ' + result['error'][:300]} ({seconds}s)")
    return results


# -- reports -------------------------------------------------------------------------------------------------------

def _md_escape(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(report):
    lines = [
        "# hf_lrschedule compatibility matrix",
        "",
        f"Generated {report['generated']} by `{report['command']}` (total {report['total_s']:.0f} s).",
        f"Source: `{report['source']['path']}` at {str(report['source'].get('commit'))[:12]}"
        + (" + working-tree changes" if report["source"].get("uncommitted_package_changes") else "")
        + f"; torch requested: {report['torch_requested']}.",
        "",
        "| python | transformers | torch | " + " | ".join(HEADERS[n] for n in CHECKS) + " | error | wall s |",
        "|---|---|---|" + "---|" * len(CHECKS) + "---|---|",
    ]
    for cell in report["cells"]:
        if cell.get("status") == EXCLUDED:
            marks = [EXCLUDED] + ["—"] * (len(CHECKS) - 1)  # the reason goes to the error column
        elif "checks" not in cell:
            marks = ["not run"] * len(CHECKS)
        else:
            marks = ["pass" if cell["checks"][n]["ok"] else "**FAIL**" for n in CHECKS]
        lines.append("| " + " | ".join(_md_escape(x) for x in [
            cell["python"], cell["transformers"], cell.get("torch") or "—", *marks,
            cell.get("error_summary") or "", f"{cell.get('wall_s', 0):.0f}",
        ]) + " |")
    lines += [
        "",
        "Why each cell: " + "; ".join(f"{c['python']} x {c['transformers']}: {c['why']}" for c in report["cells"]) + ".",
        "",
        "## Wall time per cell (seconds)",
        "",
        (
            "Setup: venv + pip (torch is installed once per interpreter into a shared venv that cell venvs see through "
            "a .pth line, unless `--no-share-torch`; `shared_torch_build` is that one-off install). Checks: each runs "
            "in a fresh process (torch + transformers import included)."
        ),
        "",
        "| python | transformers | setup | " + " | ".join(HEADERS[n] for n in CHECKS) + " | cell total |",
        "|---|---|---|" + "---|" * len(CHECKS) + "---|",
    ]
    for cell in report["cells"]:
        setup = ", ".join(f"{k} {v:.0f}" for k, v in (cell.get("setup_s") or {}).items()) or "—"
        checks = [f"{cell['checks'][n]['wall_s']:.0f}" if n in cell.get("checks", {}) else "—" for n in CHECKS]
        lines.append("| " + " | ".join(_md_escape(x) for x in [cell["python"], cell["transformers"], setup, *checks,
                                                                     f"{cell.get('wall_s', 0):.0f}"]) + " |")
    lines += ["", f"Total: {report['total_s']:.0f} s.", ""]
    return "\n".join(lines)


def error_summary(cell):
    if cell.get("status") == EXCLUDED:
        return cell.get("excluded_reason", "")
    if cell.get("setup_error"):
        return cell["setup_error"]
    parts = []
    for name in CHECKS:
        check = cell.get("checks", {}).get(name)
        if check and not check["ok"]:
            parts.append(f"{HEADERS[name]}: {check['error'][:400]}")
    return "; ".join(parts)


def write_reports(report, json_path, md_path):
    for cell in report["cells"]:
        cell["error_summary"] = error_summary(cell)
    _atomic_write(json_path, json.dumps(report, indent=2) + "\n")
    _atomic_write(md_path, render_markdown(report))


# -- main ----------------------------------------------------------------------------------------------------------

def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--pythons", help="comma-separated interpreter versions (3.11 or 3.11.7) or paths "
                        "(default: every CPython >= 3.10 under `pyenv root`/versions)")
    parser.add_argument("--transformers", default=DEFAULT_TRANSFORMERS,
                        help=f"comma-separated versions; 'latest' and '5.6.*' resolve on the index (default: {DEFAULT_TRANSFORMERS})")
    parser.add_argument("--full", action="store_true", help="every interpreter x every transformers version")
    parser.add_argument("--torch", default=DEFAULT_TORCH, help=f"torch version to install (default: {DEFAULT_TORCH})")
    parser.add_argument("--torch-index-url", help="index for torch only (e.g. https://download.pytorch.org/whl/cpu)")
    parser.add_argument("--no-share-torch", dest="share_torch", action="store_false",
                        help="install torch into every cell venv instead of one shared torch venv per interpreter")
    parser.add_argument("--index-url", default="https://pypi.org/simple", help="PEP 691 index for release metadata")
    parser.add_argument("--venv-dir", default=str(DEFAULT_VENV_DIR), help=f"venvs, logs, work dirs (default: {DEFAULT_VENV_DIR})")
    parser.add_argument("--reuse", action="store_true",
                        help="keep a venv built for the same (python, transformers, torch); only reinstall the package "
                        "(pip install --no-deps --force-reinstall SOURCE)")
    parser.add_argument("--source", default=str(REPO), help=f"package source tree to install (default: {REPO})")
    parser.add_argument("--git-ref", help="install this commit (git archive of the repo) instead of --source")
    parser.add_argument("--output-json", default=str(REPO / "results" / "compat.json"))
    parser.add_argument("--output-md", default=str(REPO / "results" / "compat.md"))
    parser.add_argument("--pip-timeout", type=int, default=3600, help="seconds per pip command")
    parser.add_argument("--check-timeout", type=int, default=1200, help="seconds per check")
    parser.add_argument("--dry-run", action="store_true", help="print the matrix and exit")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    started = time.monotonic()
    venv_dir = Path(args.venv_dir).resolve()
    args.venv_dir = str(venv_dir)
    venv_dir.mkdir(parents=True, exist_ok=True)
    os.environ.pop("PIP_REQUIRE_VIRTUALENV", None)

    pythons = discover_pythons([p.strip() for p in args.pythons.split(",")] if args.pythons else None)
    specs = [s.strip() for s in args.transformers.split(",") if s.strip()]
    try:
        releases = fetch_release_index(args.index_url)
    except Exception as error:  # noqa: BLE001 - offline: exact versions only, pip decides on requires-python
        _log(f"could not read {args.index_url} ({error}); requires-python is left to pip")
        releases = {}
    versions = resolve_transformers(specs, releases)
    cells = build_matrix(pythons, versions, releases, args.full)
    _log(f"{len(cells)} cells: " + ", ".join(f"{c[0]} x {c[2]}" for c in cells))
    if args.dry_run:
        return 0
    source, source_info = prepare_source(args)

    report = {
        "generated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python scripts/check_compat.py", *(argv if argv is not None else sys.argv[1:])]),
        "host": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "source": source_info,
        "torch_requested": args.torch + (f" from {args.torch_index_url}" if args.torch_index_url else ""),
        "transformers_requires_python": {v: releases.get(v) for v in versions},
        "cells": [],
        "total_s": 0.0,
    }
    for py, _, tf, why in cells:
        report["cells"].append({"python": py, "transformers": tf, "why": why, "requires_python": releases.get(tf)})

    logs = venv_dir / "logs"
    logs.mkdir(exist_ok=True)
    for index, cell in enumerate(cells):
        py, _, tf, _ = cell
        entry = report["cells"][index]
        _log(f"cell {index + 1}/{len(cells)}: Python {py} x transformers {tf}")
        cell_start = time.monotonic()
        requires = releases.get(tf)
        if releases and not python_allowed(requires, py):
            entry.update(status=EXCLUDED, excluded_reason=f"{EXCLUDED}: transformers {tf} requires Python {requires}", wall_s=0.0)
            _log(f"    {entry['excluded_reason']}")
        else:
            log_file = logs / f"py{py}-tf{tf}.log"
            log_file.write_text("")
            venv, info = setup_cell(cell, source, args, log_file)
            entry.update(venv=info["venv"], reused=info.get("reused"), setup_s=info.get("timings", {}), log=str(log_file))
            if info.get("excluded"):
                entry.update(status=EXCLUDED, excluded_reason=info["excluded"])
            elif info.get("error"):
                entry.update(status="setup failed", setup_error=info["error"])
                _log(f"    setup failed: {info['error']}")
            else:
                _log(f"    venv ready ({'reused' if info.get('reused') else 'built'}; {info.get('timings')})")
                checks = run_checks(venv, source, venv_dir / "work" / f"py{py}-tf{tf}", args, log_file)
                entry["checks"] = checks
                versions_seen = next((c["versions"] for c in checks.values() if isinstance(c.get("versions"), dict)), {})
                entry["torch"] = versions_seen.get("torch")
                entry["installed"] = versions_seen
                entry["status"] = "pass" if all(c["ok"] for c in checks.values()) else "fail"
            entry["wall_s"] = round(time.monotonic() - cell_start, 1)
        report["total_s"] = round(time.monotonic() - started, 1)
        write_reports(report, args.output_json, args.output_md)
    report["total_s"] = round(time.monotonic() - started, 1)
    write_reports(report, args.output_json, args.output_md)
    print(render_markdown(report))
    return 0 if all(c.get("status") in ("pass", EXCLUDED) for c in report["cells"]) else 1


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--run-check":
        sys.exit(_run_check(*sys.argv[2:]))
    sys.exit(main())
