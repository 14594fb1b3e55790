"""Recipe 2: from-scratch pretraining of a small Llama on Shakespeare (byte tokens) in a custom accelerate loop.

    python scripts/pretrain_accelerate.py --steps 300                        # linear_refined (= linear without norms)
    accelerate launch --num_processes 2 scripts/pretrain_accelerate.py       # several GPUs
    accelerate launch --multi_gpu --num_processes 2 scripts/pretrain_accelerate.py --cpu   # 2 CPU processes (gloo)
    hf-lrschedule pilot --fraction 0.1 -- python scripts/pretrain_accelerate.py --steps 300
    python scripts/pretrain_accelerate.py --scheduler cosine                 # a baseline

`--steps` counts optimizer updates, whatever the number of processes (each process sees its own batches).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

import torch
from accelerate import Accelerator
from transformers import LlamaForCausalLM, get_scheduler

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pretrain_data import byte_blocks
from recipe_data import tiny_llama_config

from hf_lrschedule import RefinedRun
from hf_lrschedule.integrations.accelerate import leave_process_group


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default="shakespeare")
    parser.add_argument("--steps", type=int, default=300, help="optimizer updates")
    parser.add_argument("--batch_size", type=int, default=16, help="per process")
    parser.add_argument("--accumulation", type=int, default=1)
    parser.add_argument("--block_size", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--lr", type=float, default=4e-3)
    parser.add_argument("--warmup_steps", type=int, default=0)
    parser.add_argument("--max_grad_norm", type=float, default=1.0)
    parser.add_argument("--scheduler", default="linear_refined", help="linear_refined, or a transformers name (baselines)")
    parser.add_argument("--lr_scheduler_kwargs", default="{}", help="JSON, e.g. '{\"grad_norms\": \"norms.json\"}'")
    parser.add_argument("--max_eval_blocks", type=int, default=64)
    parser.add_argument("--mixed_precision", default="no", help="no, bf16 or fp16")
    parser.add_argument("--cpu", action="store_true", help="force the CPU (needed for several CPU processes: gloo)")
    parser.add_argument("--output_dir", default="runs/pretrain_accelerate")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


@torch.no_grad()
def evaluate(model, loader, accelerator) -> float:
    model.eval()
    losses = [accelerator.gather_for_metrics(model(**batch).loss.detach().reshape(1)) for batch in loader]
    model.train()
    return float(torch.cat(losses).mean())


def main(argv=None) -> None:
    args = parse_args(argv)
    accelerator = Accelerator(
        gradient_accumulation_steps=args.accumulation, mixed_precision=args.mixed_precision, cpu=args.cpu
    )
    torch.manual_seed(args.seed)
    train, evaluation, vocab = byte_blocks(args.corpus, args.block_size, max_eval_blocks=args.max_eval_blocks, seed=args.seed)
    config = tiny_llama_config(vocab, hidden_size=args.hidden, num_hidden_layers=args.layers,
                               intermediate_size=4 * args.hidden, max_position_embeddings=args.block_size)
    model = LlamaForCausalLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(args.seed)
    train_loader = torch.utils.data.DataLoader(train, batch_size=args.batch_size, shuffle=True, generator=generator)
    eval_loader = torch.utils.data.DataLoader(evaluation, batch_size=args.batch_size)
    model, optimizer, train_loader, eval_loader = accelerator.prepare(model, optimizer, train_loader, eval_loader)

    run = RefinedRun(accelerator, num_training_steps=args.steps, record_to=os.path.join(args.output_dir, "grad_norms.json"))
    if args.scheduler == "linear_refined":
        scheduler = run.create_scheduler(optimizer, num_warmup_steps=args.warmup_steps, **json.loads(args.lr_scheduler_kwargs))
    else:  # a baseline: transformers' scheduler, its step counts scaled as accelerate steps it once per process
        scheduler = accelerator.prepare_scheduler(get_scheduler(
            args.scheduler, optimizer, num_warmup_steps=args.warmup_steps * accelerator.num_processes,
            num_training_steps=args.steps * accelerator.num_processes,
        ))

    done = False
    while not done:
        for batch in train_loader:
            with accelerator.accumulate(model):
                accelerator.backward(model(**batch).loss)
                run.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            if accelerator.sync_gradients and run.step_end():
                done = True
                break
    run.finish()  # in the pilot phase this saves the norms and ends the process
    eval_loss = evaluate(model, eval_loader, accelerator)
    if accelerator.is_main_process:
        os.makedirs(args.output_dir, exist_ok=True)
        result = {"eval_loss": eval_loss, "perplexity": math.exp(eval_loss), "scheduler": args.scheduler, "steps": args.steps}
        with open(os.path.join(args.output_dir, "eval_results.json"), "w") as handle:
            json.dump(result, handle, indent=1)
        print(f"eval_loss {eval_loss:.4f} ({args.scheduler})")


if __name__ == "__main__":
    main()
    leave_process_group()  # after main() has dropped the model: see its docstring
