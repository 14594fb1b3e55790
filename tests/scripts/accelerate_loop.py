"""A custom accelerate loop with linear_refined: writes the LR of every optimizer update, per rank.

Usage: python accelerate_loop.py RESULT_PREFIX NORMS_JSON [--steps T] [--accumulation K] [--split-batches]
(or under `accelerate launch --multi_gpu --num_processes 2`, which on a CPU machine runs 2 gloo processes;
`accelerate launch --cpu --num_processes 2` starts a single process in accelerate 1.x).
"""

import argparse
import hashlib
import json

from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration
from tiny import prepared_tiny_lm

from hf_lrschedule import GradNormRecorder
from hf_lrschedule.integrations.accelerate import (
    clip_grad_norm_and_record,
    create_accelerate_scheduler,
    leave_process_group,
)

parser = argparse.ArgumentParser()
parser.add_argument("result_prefix")
parser.add_argument("norms")
parser.add_argument("--steps", type=int, default=6)
parser.add_argument("--accumulation", type=int, default=2)
parser.add_argument("--split-batches", action="store_true")
args = parser.parse_args()

accelerator = Accelerator(
    cpu=True,
    gradient_accumulation_steps=args.accumulation,
    dataloader_config=DataLoaderConfiguration(split_batches=args.split_batches),
)
model, optimizer, loader = prepared_tiny_lm(accelerator)
scheduler = create_accelerate_scheduler(
    accelerator, optimizer, num_training_steps=args.steps, grad_norms=json.loads(args.norms), smoothing=0.0
)
recorder = GradNormRecorder(f"{args.result_prefix}.norms.json")

lrs, update = [], 0
while update < args.steps:
    for batch in loader:
        with accelerator.accumulate(model):
            loss = model(**batch).loss
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                lrs.append(optimizer.param_groups[0]["lr"])
                clip_grad_norm_and_record(accelerator, model.parameters(), 1.0, recorder, update + 1, record_l1=True)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        if accelerator.sync_gradients:
            update += 1
            if update == args.steps:
                break

table = scheduler.scheduler.lr_lambdas[0].table
digest = hashlib.sha256(json.dumps(table).encode()).hexdigest()
with open(f"{args.result_prefix}.rank{accelerator.process_index}.json", "w") as handle:
    json.dump(
        {
            "lrs": lrs,
            "table_sha256": digest,
            "world_size": accelerator.num_processes,
            "scheduler_steps": scheduler.scheduler.last_epoch,
        },
        handle,
    )
if accelerator.is_main_process:
    recorder.save()
del model, optimizer, loader, scheduler
accelerator.free_memory()
leave_process_group()
