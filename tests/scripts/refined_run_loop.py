"""A custom accelerate pretraining-style loop driven by hf_lrschedule.RefinedRun (pilot-aware).

Usage: python refined_run_loop.py RESULT_PREFIX [--steps T]   (or under accelerate launch)
"""

import argparse
import json

from accelerate import Accelerator
from tiny import prepared_tiny_lm

from hf_lrschedule import RefinedRun
from hf_lrschedule.integrations.accelerate import leave_process_group

parser = argparse.ArgumentParser()
parser.add_argument("result_prefix")
parser.add_argument("--steps", type=int, default=40)
args = parser.parse_args()

accelerator = Accelerator(cpu=True, gradient_accumulation_steps=2)
model, optimizer, loader = prepared_tiny_lm(accelerator, num_windows=512, shuffle=True)
run = RefinedRun(accelerator, num_training_steps=args.steps)
scheduler = run.create_scheduler(optimizer)

lrs, done = [], False
while not done:
    for batch in loader:
        with accelerator.accumulate(model):
            accelerator.backward(model(**batch).loss)
            if accelerator.sync_gradients:
                lrs.append(optimizer.param_groups[0]["lr"])
            run.clip_grad_norm_(model.parameters(), max_norm=1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        if accelerator.sync_gradients and run.step_end():
            done = True
            break
run.finish()
with open(f"{args.result_prefix}.rank{accelerator.process_index}.json", "w") as handle:
    json.dump({"lrs": lrs, "world_size": accelerator.num_processes}, handle)
del model, optimizer, loader, scheduler, run
accelerator.free_memory()
leave_process_group()
