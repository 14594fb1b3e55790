import json
import shutil
import subprocess
import sys

import pytest
import torch
from accelerate import Accelerator
from conftest import TESTS, subprocess_env
from refine_reference import refine_schedule_reference

from hf_lrschedule.integrations.accelerate import create_accelerate_scheduler

NORMS = [4.0, 2.0, 1.0, 1.0, 1.2, 1.5, 2.0, 2.5]
SCRIPT = str(TESTS / "scripts" / "accelerate_loop.py")


def run_loop(tmp_path, name, processes, *extra):
    prefix = tmp_path / name
    if processes == 1:
        cmd = [sys.executable, SCRIPT]
    else:
        launcher = shutil.which("accelerate") or pytest.skip("accelerate launcher not on PATH")
        # --multi_gpu on a CPU-only machine: torch.distributed with gloo (`--cpu` would start one process)
        cmd = [launcher, "launch", "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", SCRIPT]
    proc = subprocess.run(
        [*cmd, str(prefix), json.dumps(NORMS), *extra], capture_output=True, text=True, env=subprocess_env(), timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"{name}.rank{r}.json").read_text()) for r in range(processes)]
    return ranks, prefix


def expected_lrs(T):
    return [1e-2 * m for m in refine_schedule_reference(NORMS, T, smoothing=0.0)]


def test_prepared_scheduler_steps_once_per_update_in_one_process():
    accelerator = Accelerator(cpu=True)
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = accelerator.prepare(torch.optim.SGD([param], lr=1.0))
    scheduler = create_accelerate_scheduler(accelerator, optimizer, num_training_steps=4)
    assert scheduler.scheduler.lr_lambdas[0].steps_per_update == 1
    lrs = []
    for _ in range(4):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == [1.0, 0.75, 0.5, 0.25]


def test_two_processes_give_the_same_lr_at_every_update_as_one(tmp_path):
    (single,), _ = run_loop(tmp_path, "one", 1)
    ranks, _ = run_loop(tmp_path, "two", 2)
    assert single["lrs"] == pytest.approx(expected_lrs(6), rel=1e-12)
    for rank in ranks:
        assert rank["world_size"] == 2
        assert rank["scheduler_steps"] == 2 * single["scheduler_steps"]  # accelerate steps it once per process
        assert rank["lrs"] == single["lrs"]
        assert rank["table_sha256"] == single["table_sha256"]  # the same schedule on every rank
    norms_files = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("two.norms"))
    assert norms_files == ["two.norms.json"]  # written once, by the main process
    recorded = json.loads((tmp_path / "two.norms.json").read_text())
    assert recorded["steps"] == [1, 2, 3, 4, 5, 6] and all(v > 0 for v in recorded["l1"])


def test_two_processes_with_split_batches(tmp_path):
    ranks, _ = run_loop(tmp_path, "split", 2, "--split-batches")
    for rank in ranks:
        assert rank["lrs"] == pytest.approx(expected_lrs(6), rel=1e-12)
