"""The compatibility matrix's driver: which cells run (interpreters x transformers releases), the source tree
to install, and per cell its venv (torch, transformers, the package) and its checks (`compat_checks`), each check
in a fresh process. Stdlib only; runs under any Python >= 3.8 and never installs into the interpreter running it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

from compat_checks import CHECKS, error_line

REPO = Path(__file__).resolve().parent.parent
CHECKS_SCRIPT = Path(__file__).resolve().with_name("compat_checks.py")
ANCHOR_PYTHON = "3.11"  # the interpreter that is crossed with every transformers version in the default matrix
EXCLUDED = "excluded by metadata"
MARKER = "compat_marker.json"


def atomic_write(path, text):
    from hf_lrschedule.formats import atomic_write_text  # the driver runs where the package is installed

    atomic_write_text(path, text)


def log(message):
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
    log(f"    building the shared torch venv {base}")
    start = time.monotonic()
    code, output = _new_venv(py_path, base, log_file, args)
    if code == 0:
        code, output = _run(_torch_command(str(_venv_python(base)), args), log_file, args.pip_timeout)
    seconds = round(time.monotonic() - start, 1)
    if code != 0:
        return None, seconds, f"pip install torch=={args.torch} failed: {error_line(output)}"
    atomic_write(marker, json.dumps(wanted))
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
            info["error"] = f"pip install of the package failed: {error_line(output)}"
        return venv, info

    start = time.monotonic()
    code, output = _new_venv(py_path, venv, log_file, args)
    timings["venv"] = round(time.monotonic() - start, 1)
    if code != 0:
        info.update(error=f"venv creation failed: {error_line(output)}", timings=timings)
        return venv, info

    start = time.monotonic()
    if torch_site:
        # after the venv's own site-packages on sys.path: anything pip installs here shadows the shared copy
        Path(_site_packages(python), "_compat_shared_torch.pth").write_text(torch_site + "\n")
    else:
        code, output = _run(_torch_command(python, args), log_file, args.pip_timeout)
        timings["torch"] = round(time.monotonic() - start, 1)
        if code != 0:
            info.update(error=f"pip install torch=={args.torch} failed: {error_line(output)}", timings=timings)
            return venv, info

    start = time.monotonic()
    # one resolver run for transformers and the package, so the package's own pins take part
    code, output = _run([python, "-m", "pip", "install", f"transformers=={tf}", f"torch=={args.torch}", str(source)],
                        log_file, args.pip_timeout)
    timings["transformers_and_package"] = round(time.monotonic() - start, 1)
    info.update(reused=False, timings=timings)
    if code != 0:
        if _pip_failure_is_metadata(output):
            info["excluded"] = f"{EXCLUDED}: {error_line(output)}"
        else:
            info["error"] = f"pip install transformers=={tf} + package failed: {error_line(output)}"
        return venv, info
    atomic_write(marker_file, json.dumps(wanted))
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
    # the package as a user gets it: the start-up hook on (no HF_LRSCHEDULE_AUTOREGISTER) and no pilot around
    for key in [k for k in env if k.startswith("HF_LRSCHEDULE_")]:
        del env[key]
    for name in CHECKS:
        workdir = cell_dir / name
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        result_file = workdir / "result.json"
        command = [str(_venv_python(venv)), str(CHECKS_SCRIPT), name, str(workdir), str(source), str(result_file)]
        start = time.monotonic()
        code, output = _run(command, log_file, args.check_timeout, env=env, cwd=str(workdir))
        seconds = round(time.monotonic() - start, 1)
        if result_file.exists():
            result = json.loads(result_file.read_text())
        else:
            result = {"ok": False, "error": error_line(output) or f"exit {code}"}
        if not result["ok"]:
            warning = [line.strip() for line in output.splitlines() if "RegistrationWarning" in line]
            if warning and warning[0] not in result["error"]:
                result["error"] += f" [{warning[0]}]"
            result["output_tail"] = output[-4000:]
        result["wall_s"] = seconds
        results[name] = result
        log(f"    {name}: {'pass' if result['ok'] else 'FAIL: ' + result['error'][:300]} ({seconds}s)")
    return results
