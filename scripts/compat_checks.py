"""The checks of one compatibility cell, each run in its own process inside the cell's venv:

    python scripts/compat_checks.py NAME WORKDIR SOURCE RESULT_FILE

NAME is one of `CHECKS`; the result (ok, details or error, seconds, installed versions) goes to RESULT_FILE as JSON.
Only the stdlib is imported at module level, so the registration check sees exactly what a user script sees.
Runs under any Python >= 3.8.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

CHECKS = ("registration", "stock_script", "ten_step_run", "resume", "broken_glue")
HEADERS = {
    "registration": "registration", "stock_script": "stock script", "ten_step_run": "10-step run", "resume": "resume",
    "broken_glue": "broken glue",
}

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
        raise RuntimeError(f"stock_train.py exited {proc.returncode}: {error_line(proc.stderr)}")
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
        raise RuntimeError(f"training_args.bin does not unpickle to linear_refined: {error_line(load.stderr) or load.stdout[-300:]}")
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
        raise RuntimeError(f"transformers broke with a broken glue module: {error_line(proc.stderr)}")
    warnings = [line for line in proc.stderr.splitlines() if "RegistrationWarning" in line]
    assert len(warnings) == 1 and "HF_LRSCHEDULE_AUTOREGISTER=0" in warnings[0], proc.stderr[-2000:]
    return {"warning": warnings[0][-300:]}


def run_check(name, workdir, source, result_file):
    import traceback

    start = time.monotonic()
    try:
        details = globals()[f"check_{name}"](workdir, source)
        result = {"ok": True, "details": details}
    except BaseException as error:  # noqa: BLE001 - report everything, SystemExit from argparse included
        traceback.print_exc()
        result = {"ok": False, "error": describe_error(error)}
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


_ERROR_RE = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Warning|Interrupt|Exit)|AssertionError)(:|$)")
_CHAINED = ("The above exception was the direct cause", "During handling of the above exception")


def describe_error(error):
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


def error_line(stderr):
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


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] not in CHECKS:
        sys.exit(f"usage: python compat_checks.py {{{','.join(CHECKS)}}} WORKDIR SOURCE RESULT_FILE")
    sys.exit(run_check(*sys.argv[1:]))
