"""Recorded gradient norms under sharded training (2 gloo processes on CPU) = those of the same steps unsharded.

The scripts in tests/scripts train the tiny Llama for 6 AdamW updates with clipping at 1.0 (l2 above 1 on 3 of them,
so the l1 unclipping is exercised too), sharded across 2 processes, and replay the same steps unsharded in one
process. float32 all through: the sharded runs reduce the gradients in a different order, so the norms agree to
rounding (observed: at most 8e-7 relative), not bit for bit.
"""

import importlib.util
import json
import os
import shutil
import signal
import subprocess

import pytest
from conftest import TESTS, subprocess_env

REL = 1e-5  # float32 rounding of a differently ordered reduction, with margin
STEPS = 6


def launch(script: str, out_dir, timeout: int) -> None:
    """torchrun on a free port (`--standalone`: tests running side by side); on a timeout its workers go too."""
    torchrun = shutil.which("torchrun") or pytest.skip("torchrun not on PATH")
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", str(TESTS / "scripts" / script), str(out_dir),
           "--steps", str(STEPS)]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env(), start_new_session=True
    )
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, stderr = proc.communicate()
        pytest.fail(f"{script} took more than {timeout} s:\n{stderr[-4000:]}")
    assert proc.returncode == 0, stderr[-4000:]


def assert_series_equal(values, reference):
    assert len(values) == len(reference) == STEPS
    assert values == pytest.approx(reference, rel=REL)


def test_fsdp_recorded_norms_equal_unsharded(tmp_path):
    launch("fsdp_norms.py", tmp_path, timeout=300)
    result = json.loads((tmp_path / "fsdp_norms.json").read_text())
    assert result["world_size"] == 2 and result["backend"] == "gloo"
    reference = result["unsharded"]
    assert max(reference["l2"]) > 1.0 > min(reference["l2"])  # some steps clipped, some not

    fsdp2 = result["fsdp2"]
    assert fsdp2["param_types"] == ["DTensor"]  # really sharded by fully_shard
    recorded = json.loads((tmp_path / "fsdp2.grad_norms.json").read_text())  # the library's own file, from rank 0
    assert recorded["steps"] == list(range(1, STEPS + 1))
    assert_series_equal(recorded["l2"], reference["l2"])  # clip_grad_norm_and_record: pre-clip global l2
    assert_series_equal(recorded["l1"], reference["l1"])  # summed over both shards, unclipped
    assert_series_equal(fsdp2["l1_direct"], reference["l1"])  # grad_l1_norm(sharded=True) before the clip
    assert_series_equal(fsdp2["loss"], reference["loss"])  # same trajectory

    for variant in ("fsdp1", "fsdp1_orig_params"):  # FSDP1's own clip_grad_norm_, the Trainer callback's l1 call
        fsdp1 = result[variant]
        assert_series_equal(fsdp1["l2"], reference["l2"])
        assert_series_equal(fsdp1["l1"], reference["l1"])
        assert_series_equal(fsdp1["loss"], reference["loss"])
    for variant in ("fsdp2", "fsdp1", "fsdp1_orig_params"):  # rank 0 held about half of the model
        assert result[variant]["local_numel"] < 0.6 * result["full_numel"], variant


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed not installed (not in .[test])")
def test_deepspeed_zero2_recorded_l2_equals_unsharded(tmp_path):
    # the first run on a machine JIT-compiles DeepSpeed's CPU shm op (minutes); later runs load it from the cache
    launch("deepspeed_norms.py", tmp_path, timeout=600)
    result = json.loads((tmp_path / "deepspeed_norms.json").read_text())
    assert result["world_size"] == 2 and result["backend"] == "gloo"
    assert result["distributed_type"] == "DistributedType.DEEPSPEED" and result["zero_stage"] == 2
    reference = result["unsharded"]
    recorded = json.loads((tmp_path / "zero2.grad_norms.json").read_text())
    assert_series_equal(recorded["l2"], reference["l2"])  # the engine's global norm, through accelerate
    assert recorded["steps"] == list(range(1, STEPS + 1))
    assert recorded["l1"] is None  # ZeRO-2 keeps the gradients in the engine: skipped, not wrong
    assert_series_equal(result["zero2"]["loss"], reference["loss"])
