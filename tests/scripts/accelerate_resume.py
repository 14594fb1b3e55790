"""A custom accelerate loop that can stop after update K (accelerator.save_state) and resume (load_state).

Usage: python accelerate_resume.py RESULT_JSON [--stop_after K --state DIR] [--resume DIR]
"""

import argparse
import json
from pathlib import Path

from accelerate import Accelerator
from tiny import prepared_tiny_lm

from hf_lrschedule.integrations.accelerate import create_accelerate_scheduler

parser = argparse.ArgumentParser()
parser.add_argument("result")
parser.add_argument("--steps", type=int, default=10)
parser.add_argument("--stop_after", type=int, default=0)
parser.add_argument("--state", default="")
parser.add_argument("--resume", default="")
args = parser.parse_args()

accelerator = Accelerator(cpu=True, gradient_accumulation_steps=2)
model, optimizer, loader = prepared_tiny_lm(accelerator)
scheduler = create_accelerate_scheduler(
    accelerator, optimizer, num_training_steps=args.steps, grad_norms=[3.0, 2.0, 1.0, 1.0, 1.2, 1.4, 1.6, 2.0]
)
update = 0
if args.resume:
    accelerator.load_state(args.resume)
    update = json.loads(Path(args.resume, "update.json").read_text())["update"]
    loader = accelerator.skip_first_batches(loader, update * 2)

lrs = {}
while update < args.steps:
    for batch in loader:
        with accelerator.accumulate(model):
            accelerator.backward(model(**batch).loss)
            if accelerator.sync_gradients:
                lrs[update + 1] = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        if accelerator.sync_gradients:
            update += 1
            if update == args.stop_after:
                accelerator.save_state(args.state)
                Path(args.state, "update.json").write_text(json.dumps({"update": update}))
                Path(args.result).write_text(json.dumps({"lrs": lrs}))
                raise SystemExit(0)
            if update == args.steps:
                break
Path(args.result).write_text(json.dumps({"lrs": lrs}))
