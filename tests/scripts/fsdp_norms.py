"""Recorded gradient norms under torch FSDP (2 gloo processes on CPU) against the same steps unsharded.

Usage: torchrun --standalone --nproc_per_node 2 fsdp_norms.py OUT_DIR [--steps 6] [--variants fsdp2,fsdp1,...]

Each variant trains the tiny Llama for `--steps` AdamW updates (clipping at 1.0) on a global batch of 4 windows,
2 per rank, and records the l2 and l1 norms through the library: `clip_grad_norm_and_record` (FSDP2) or FSDP1's own
`clip_grad_norm_` plus `grad_l1_norm(..., sharded=True)` (what the Trainer callback does). Rank 0 then replays the
steps on an unsharded copy (same seed, same 4 windows, same optimizer) in this process and writes
OUT_DIR/fsdp_norms.json; the recorder file of the FSDP2 run is OUT_DIR/fsdp2.grad_norms.json.

accelerate only selects its FSDP backend on accelerator devices, so on CPU the model is sharded here with torch and
the `Accelerator(cpu=True)` handles the process group and the clip call: its CPU path is
`_clip_grad_norm_dtensor_aware`, the same function its FSDP2 path calls.
"""

import argparse
import json
import os
from pathlib import Path

import torch
from accelerate import Accelerator
from tiny import ByteLMDataset, tiny_llama
from torch.distributed.device_mesh import init_device_mesh

from hf_lrschedule import GradNormRecorder
from hf_lrschedule.integrations.accelerate import clip_grad_norm_and_record, leave_process_group
from hf_lrschedule.integrations.norms import grad_l1_norm

MAX_NORM = 1.0
PER_RANK = 2


def batches(steps: int, world_size: int, rank: int | None):
    """The global batch of each step, or rank `rank`'s slice of it (None: the whole batch)."""
    data = ByteLMDataset(num_windows=steps * PER_RANK * world_size)
    size = PER_RANK * world_size
    for step in range(steps):
        windows = [data[i] for i in range(step * size, (step + 1) * size)]
        if rank is not None:
            windows = windows[rank * PER_RANK : (rank + 1) * PER_RANK]
        yield {key: torch.stack([w[key] for w in windows]) for key in windows[0]}


def mean_loss(loss: torch.Tensor) -> float:
    """The global batch's loss: every rank has the same number of tokens, so the mean of the ranks' means."""
    total = loss.detach().clone()
    torch.distributed.all_reduce(total)
    return float(total) / torch.distributed.get_world_size()


def run_fsdp2(accelerator, out_dir: Path, steps: int) -> dict:
    """FSDP2 (`fully_shard`, DTensor parameters) recorded by `clip_grad_norm_and_record`."""
    from torch.distributed.fsdp import fully_shard

    model = tiny_llama()
    mesh = init_device_mesh("cpu", (accelerator.num_processes,))
    for layer in model.model.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    recorder = GradNormRecorder(out_dir / "fsdp2.grad_norms.json")
    losses, l1_direct = [], []
    for step, batch in enumerate(batches(steps, accelerator.num_processes, accelerator.process_index), start=1):
        loss = model(**batch).loss
        loss.backward()
        l1_direct.append(float(grad_l1_norm(model.parameters(), sharded=True)))  # pre-clip, straight from the shards
        clip_grad_norm_and_record(accelerator, model.parameters(), MAX_NORM, recorder, step, record_l1=True)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(mean_loss(loss))
    if accelerator.is_main_process:
        recorder.save()
    return {"l2": recorder.l2, "l1": recorder.l1, "l1_direct": l1_direct, "loss": losses, **held(model)}


def run_fsdp1(accelerator, steps: int, use_orig_params: bool) -> dict:
    """FSDP1: its own global `clip_grad_norm_` (what accelerate calls) and the sharded l1 sum of the Trainer callback.

    `use_orig_params=False`: the parameters are the flat shards; True (accelerate's default): views of them.
    """
    from torch.distributed.fsdp import FullyShardedDataParallel

    model = FullyShardedDataParallel(tiny_llama(), device_id=torch.device("cpu"), use_orig_params=use_orig_params)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    l2s, l1s, losses = [], [], []
    for batch in batches(steps, accelerator.num_processes, accelerator.process_index):
        loss = model(**batch).loss
        loss.backward()
        l1s.append(float(grad_l1_norm(model.parameters(), sharded=True)))
        l2s.append(float(model.clip_grad_norm_(MAX_NORM)))
        optimizer.step()
        optimizer.zero_grad()
        losses.append(mean_loss(loss))
    return {"l2": l2s, "l1": l1s, "loss": losses, **held(model)}


def held(model) -> dict:
    """What this rank holds: parameter types and element count (the whole model has `full_numel`)."""
    local = [p.to_local() if hasattr(p, "to_local") else p for p in model.parameters()]
    return {
        "param_types": sorted({type(p).__name__ for p in model.parameters()}),
        "local_numel": sum(t.numel() for t in local),
    }


def run_unsharded(steps: int, world_size: int) -> dict:
    """The same steps in one process on the whole batch: torch's clip for l2, a plain float64 sum for l1."""
    model = tiny_llama()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    l2s, l1s, losses = [], [], []
    for batch in batches(steps, world_size, None):
        loss = model(**batch).loss
        loss.backward()
        l1s.append(sum(float(p.grad.double().abs().sum()) for p in model.parameters() if p.grad is not None))
        l2s.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_NORM)))
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
    return {"l2": l2s, "l1": l1s, "loss": losses}


def max_rel_diff(values, reference) -> float:
    return max(abs(v - r) / abs(r) for v, r in zip(values, reference, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--variants", default="fsdp2,fsdp1,fsdp1_orig_params")
    args = parser.parse_args()
    torch.set_num_threads(1)  # 2 processes on a 2-core machine
    accelerator = Accelerator(cpu=True)
    if accelerator.num_processes != 2:
        raise SystemExit(f"run under torchrun --nproc_per_node 2, got {accelerator.num_processes} process(es)")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for variant in args.variants.split(","):
        if variant == "fsdp2":
            results[variant] = run_fsdp2(accelerator, args.out_dir, args.steps)
        elif variant in ("fsdp1", "fsdp1_orig_params"):
            results[variant] = run_fsdp1(accelerator, args.steps, use_orig_params=variant == "fsdp1_orig_params")
        else:
            raise SystemExit(f"unknown variant {variant!r}: expected fsdp2, fsdp1 or fsdp1_orig_params")
    if accelerator.is_main_process:
        reference = run_unsharded(args.steps, accelerator.num_processes)
        for result in results.values():
            result["max_rel_diff"] = {
                key: max_rel_diff(result[key], reference[key.removesuffix("_direct")])
                for key in ("l2", "l1", "l1_direct", "loss")
                if key in result
            }
        summary = {
            "world_size": accelerator.num_processes,
            "distributed_type": str(accelerator.distributed_type),
            "backend": torch.distributed.get_backend(),
            "steps": args.steps,
            "max_norm": MAX_NORM,
            "dtype": "float32",
            "torch": torch.__version__,
            "full_numel": sum(p.numel() for p in tiny_llama().parameters()),
            "unsharded": reference,
            **results,
        }
        tmp = args.out_dir / f"fsdp_norms.json.tmp{os.getpid()}"
        tmp.write_text(json.dumps(summary, indent=1))
        os.replace(tmp, args.out_dir / "fsdp_norms.json")
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    main()
    leave_process_group()
