"""LoRA fine-tuning of SmolLM2-135M on Shakespeare, refined vs linear, on a CPU (the main job before it became pretraining).

One process, so the model is converted and the text tokenized once:

1. a pilot (`hf_lrschedule.run_pilot`, 20 % of the steps: 12 of 60) records the gradient norms and refines the schedule,
   then the full run trains with it (`linear_refined`);
2. a linear-decay baseline of the same length, from the same initial weights and data order;
3. the eval losses side by side, what the refined schedule changes, and the schedule picture.

The same recipe runs as separate commands, as a user would run it:
`hf-lrschedule pilot --fraction 0.2 -- python scripts/finetune_lora.py --config recipes/lora_smollm2_cpu.yaml`.

    python scripts/lora_job.py                  # about 3 minutes on a 2-core CPU
    python scripts/lora_job.py --max_steps 40   # a quicker look
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="recipes/lora_smollm2_cpu.yaml")
    parser.add_argument("--max_steps", type=int, default=60)
    parser.add_argument("--fraction", type=float, default=0.2)
    parser.add_argument("--out", default="runs/lora_job")
    args = parser.parse_args()
    start = time.perf_counter()
    out = ROOT / args.out

    from finetune_lora import (
        RecipeArguments,
        block_dataset,
        build_trainer,
        load_model_and_tokenizer,
        lora_model,
        train_and_evaluate,
    )
    from recipe_data import prepare_smollm2, prepare_text_corpus
    from transformers import TrainingArguments
    from trl import TrlParser

    import hf_lrschedule
    from hf_lrschedule.formats import load_schedule
    from hf_lrschedule.pilot.protocol import PLOT_FILE
    from hf_lrschedule.refine import describe_schedule

    print("[lora job] preparing the corpus and the model (cached after the first run)", flush=True)
    prepare_text_corpus("shakespeare")
    prepare_smollm2()
    recipe, base_args = TrlParser((RecipeArguments, TrainingArguments)).parse_args_and_config(
        ["--config", str(ROOT / args.config), "--max_steps", str(args.max_steps), "--output_dir", str(out)]
    )
    pretrained, tokenizer = load_model_and_tokenizer(recipe)  # loaded once; each run wraps its own copy
    train, evaluation = block_dataset(recipe, tokenizer, base_args)

    rows, pilot = {}, {}
    for number, name in enumerate(("linear_refined", "linear"), start=1):
        print(f"\n[lora job] {number}/2: {'pilot + refined full run' if name != 'linear' else 'linear-decay baseline'}",
              flush=True)
        model = copy.deepcopy(pretrained)  # get_peft_model injects the adapters in place
        training_args = TrainingArguments(**{**base_args.to_dict(), "output_dir": str(out / name),
                                             "lr_scheduler_type": name})
        trainer = build_trainer(recipe, training_args, lora_model(recipe, model, training_args.seed), train, evaluation)
        if name == "linear_refined":
            t0 = time.perf_counter()
            schedule_path = hf_lrschedule.run_pilot(trainer, fraction=args.fraction, out=out / "pilot")
            schedule = load_schedule(schedule_path)
            pilot = {"seconds": time.perf_counter() - t0, "schedule": str(schedule_path),
                     "peak_fraction": schedule.get("peak_fraction"),
                     "description": describe_schedule(schedule["multipliers"]),
                     "plot": str(Path(schedule_path).with_name(PLOT_FILE))}
        rows[name] = train_and_evaluate(trainer)

    base = rows["linear"]["eval_loss"]
    print(f"\n[lora job] done in {time.perf_counter() - start:.0f} s. SmolLM2-135M + LoRA, Shakespeare, "
          f"{args.max_steps} steps:")
    print(f"{'schedule':<16}{'eval loss':>10}{'vs linear':>11}")
    for name, metrics in rows.items():
        print(f"{name:<16}{metrics['eval_loss']:>10.4f}{100 * (metrics['eval_loss'] - base) / base:>+10.2f}%")
    print(f"pilot: {pilot['seconds']:.0f} s; refined schedule against linear: {pilot['description']}")
    print(f"schedule picture: {pilot['plot']}")
    summary = {"max_steps": args.max_steps, "fraction": args.fraction, "seconds": time.perf_counter() - start,
               "eval_loss": {k: v["eval_loss"] for k, v in rows.items()}, "pilot": pilot}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
