"""Recorded gradient norms under DeepSpeed ZeRO-2 (2 gloo processes on CPU) against the same steps unsharded.

Usage: torchrun --standalone --nproc_per_node 2 deepspeed_norms.py OUT_DIR [--steps 6]

The steps of `fsdp_norms.py` (tiny Llama, AdamW, clipping at 1.0 done by DeepSpeed, a global batch of 4 windows, 2
per rank) through accelerate's DeepSpeed backend, recorded with `clip_grad_norm_and_record`: under DeepSpeed that
reads the engine's `get_global_grad_norm()`, and ZeRO-2 leaves no `.grad` to take an l1 norm of. Rank 0 replays the
steps unsharded and writes OUT_DIR/deepspeed_norms.json.

On a CPU-only machine accelerate 1.15 starts DeepSpeed's process group (gloo) but reports `num_processes == 1` and
`process_index == 0` on every rank (its backend detection finds no device), while the engine itself runs on both
ranks. So the data is split and the files written by torch's rank here, not by the accelerator's.
"""

import argparse
import json
import os
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DeepSpeedPlugin
from fsdp_norms import MAX_NORM, PER_RANK, batches, max_rel_diff, mean_loss, run_unsharded
from tiny import tiny_llama

from hf_lrschedule import GradNormRecorder
from hf_lrschedule.integrations.accelerate import clip_grad_norm_and_record, leave_process_group


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(1)  # 2 processes on a 2-core machine
    world_size = int(os.environ["WORLD_SIZE"])
    config = {
        "train_batch_size": PER_RANK * world_size,
        "train_micro_batch_size_per_gpu": PER_RANK,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": MAX_NORM,
        "zero_optimization": {"stage": 2},
        "zero_allow_untested_optimizer": True,  # torch's AdamW, as in the unsharded run
    }
    accelerator = Accelerator(deepspeed_plugin=DeepSpeedPlugin(hf_ds_config=config))
    rank = torch.distributed.get_rank()
    if torch.distributed.get_world_size() != 2:
        raise SystemExit("run under torchrun --nproc_per_node 2")
    model = tiny_llama()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model, optimizer = accelerator.prepare(model, optimizer)
    recorder = GradNormRecorder(args.out_dir / "zero2.grad_norms.json")
    losses = []
    for step, batch in enumerate(batches(args.steps, world_size, rank), start=1):
        loss = model(**batch).loss
        accelerator.backward(loss)  # DeepSpeed: backward, then the engine's step (clipping included)
        clip_grad_norm_and_record(accelerator, model.parameters(), MAX_NORM, recorder, step, record_l1=True)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(mean_loss(loss))
    if rank == 0:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        recorder.save()
        reference = run_unsharded(args.steps, world_size)
        zero2 = {"l2": recorder.l2, "l1": recorder.l1, "loss": losses}
        zero2["max_rel_diff"] = {key: max_rel_diff(zero2[key], reference[key]) for key in ("l2", "loss")}
        summary = {
            "world_size": world_size,
            "accelerate_num_processes": accelerator.num_processes,
            "distributed_type": str(accelerator.distributed_type),
            "backend": torch.distributed.get_backend(),
            "zero_stage": model.zero_optimization_stage(),
            "zero_optimizer": type(model.optimizer).__name__,
            "steps": args.steps,
            "max_norm": MAX_NORM,
            "dtype": "float32",
            "unsharded": reference,
            "zero2": zero2,
        }
        tmp = args.out_dir / f"deepspeed_norms.json.tmp{os.getpid()}"
        tmp.write_text(json.dumps(summary, indent=1))
        os.replace(tmp, args.out_dir / "deepspeed_norms.json")
    torch.distributed.barrier()


if __name__ == "__main__":
    main()
    leave_process_group()
