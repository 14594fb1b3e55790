"""The README's main job: pretrain a small Llama from scratch on Shakespeare; a 10 % pilot finds the warmup.

Pretraining from scratch is where refinement acts: the gradient norms of the first steps are large, so the refined
schedule gets a warmup that nobody had to tune. Side by side, for each seed, from the same initial weights and data
order (stock `Trainer`, AdamW with weight decay 0.1, clip 1, LR 4e-3, 300 steps, batch 16 x 64 bytes):

1. `linear_refined` with no warmup: `hf_lrschedule.run_pilot` trains 10 % of the steps, records the norms and
   refines the schedule, then the full run trains with it (1.1 runs of compute);
2. `linear` with no warmup, transformers' default and the habit the budget view calls `linear_habit` (1 run);
3. `linear` with a 20 % warmup, the warmup the benchmark tuned for this model and corpus (1 run here, but it took
   a warmup sweep to find).

It prints the eval losses, what the pilot did to the schedule, and the budget-matched comparison with the seeds'
spread. The same pilot as separate commands, as a user runs it:
`hf-lrschedule pilot --fraction 0.1 -- python scripts/pretrain_trainer.py --config recipes/pretrain_shakespeare.yaml`.

    python scripts/main_job.py                         # 2 seeds, about 4 minutes on a 2-core CPU
    python scripts/main_job.py --seeds 0 --max_steps 60  # a quick look
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

#: (name in the report, lr_scheduler_type, warmup_ratio, runs of compute, with a pilot)
RUNS = (
    ("linear_refined + 10% pilot", "linear_refined", 0.0, 1.1, True),
    ("linear, no warmup (habit)", "linear", 0.0, 1.0, False),
    ("linear, 20% warmup (tuned)", "linear", 0.2, 1.0, False),
)
REFINED, HABIT, TUNED = (name for name, *_ in RUNS)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max_steps", type=int, default=300)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--learning_rate", type=float, default=4e-3)
    parser.add_argument("--out", default="runs/main_job")
    args = parser.parse_args()
    start = time.perf_counter()
    out = ROOT / args.out

    import torch
    from pretrain_data import byte_blocks
    from recipe_data import tiny_llama_config
    from transformers import LlamaForCausalLM, Trainer, TrainingArguments

    import hf_lrschedule
    from hf_lrschedule.formats import atomic_write_json, load_schedule
    from hf_lrschedule.pilot.protocol import PLOT_FILE
    from hf_lrschedule.refine import describe_schedule

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    print("[main job] preparing Shakespeare's plays as 64-byte blocks (cached after the first run)", flush=True)
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()
    results: dict[str, dict[int, float]] = {name: {} for name, *_ in RUNS}
    pilots = {}
    train, evaluation, vocab = byte_blocks("shakespeare", 64, max_eval_blocks=256)  # the Trainer shuffles per seed
    for seed in args.seeds:
        for number, (name, scheduler, warmup, _, pilot) in enumerate(RUNS, start=1):
            print(f"[main job] seed {seed}, {number}/{len(RUNS)}: {name}", flush=True)
            torch.manual_seed(seed)  # the same initial weights for every schedule of a seed
            config = tiny_llama_config(vocab, hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                                       num_key_value_heads=4, intermediate_size=256, max_position_embeddings=64)
            folder = out / f"seed{seed}" / name.split(",")[0].split(" ")[0] / (f"w{int(100 * warmup)}" if not pilot else "")
            training_args = TrainingArguments(
                output_dir=str(folder), max_steps=args.max_steps, per_device_train_batch_size=16,
                per_device_eval_batch_size=64, learning_rate=args.learning_rate, weight_decay=0.1, max_grad_norm=1.0,
                lr_scheduler_type=scheduler, warmup_steps=warmup,  # below 1: a fraction of the steps
                logging_steps=max(1, args.max_steps // 3),
                save_strategy="no", eval_strategy="no", report_to="none", disable_tqdm=True, seed=seed,
                data_seed=seed, use_cpu=True,
            )
            trainer = Trainer(model=LlamaForCausalLM(config), args=training_args, train_dataset=train,
                              eval_dataset=evaluation)
            if pilot:
                t0 = time.perf_counter()
                schedule_path = hf_lrschedule.run_pilot(trainer, fraction=args.fraction, out=folder / "pilot")
                multipliers = load_schedule(schedule_path)["multipliers"]
                pilots[seed] = {
                    "seconds": round(time.perf_counter() - t0, 1), "schedule": str(schedule_path),
                    "peak_fraction": multipliers.index(max(multipliers)) / (len(multipliers) - 1),
                    "description": describe_schedule(multipliers),
                    "plot": str(Path(schedule_path).with_name(PLOT_FILE)),
                }
            trainer.train()
            results[name][seed] = float(trainer.evaluate()["eval_loss"])
            print(f"[main job]   eval loss {results[name][seed]:.4f}", flush=True)

    summary = report(args, results, pilots, time.perf_counter() - start)
    atomic_write_json(out / "summary.json", summary)
    print(f"summary: {out / 'summary.json'}")
    return 0


def report(args, results, pilots, seconds) -> dict:
    means = {name: statistics.fmean(by_seed.values()) for name, by_seed in results.items()}
    spreads = {name: statistics.stdev(by_seed.values()) if len(by_seed) > 1 else float("nan")
               for name, by_seed in results.items()}
    noise = max(spreads.values())
    print(f"\n[main job] done in {seconds:.0f} s: Llama 4L x 64 from scratch on Shakespeare's bytes, "
          f"{args.max_steps} steps, AdamW (weight decay 0.1), LR {args.learning_rate:g}, seeds {args.seeds}")
    print(f"{'schedule':<30}{'runs':>6}{'eval loss':>11}{'seeds std':>11}{'vs habit':>10}")
    for name, _, _, runs, _ in RUNS:
        print(f"{name:<30}{runs:>6.1f}{means[name]:>11.4f}{spreads[name]:>11.4f}"
              f"{100 * (means[name] - means[HABIT]) / means[HABIT]:>+9.2f}%")
    for seed, pilot in pilots.items():
        print(f"pilot (seed {seed}, {pilot['seconds']:.0f} s): peak at {100 * pilot['peak_fraction']:.1f}% of training; "
              f"{pilot['description']}; picture: {pilot['plot']}")
    gain = means[HABIT] - means[REFINED]
    if math.isnan(noise):
        verdict = "one seed: no noise estimate"
    else:
        verdict = "beyond the noise" if abs(gain) > noise else "inside the noise"
    print(f"\nAt the budget users spend (one run, no warmup sweep; the pilot costs {args.fraction:.0%} of a run), "
          f"linear_refined's eval loss is {100 * abs(gain) / means[HABIT]:.2f}% {'lower' if gain >= 0 else 'higher'} "
          f"than linear's at the habitual warmup "
          f"({gain:+.4f} against a seeds' spread of {noise:.4f}: {verdict}).")
    to_tuned = means[REFINED] - means[TUNED]
    print(f"Against linear with the warmup a sweep found: {to_tuned:+.4f} "
          f"({'inside' if abs(to_tuned) <= noise else 'beyond'} the noise).")
    return {"max_steps": args.max_steps, "seeds": args.seeds, "fraction": args.fraction,
            "learning_rate": args.learning_rate, "seconds": round(seconds, 1),
            "eval_loss": {name: {str(s): v for s, v in by_seed.items()} for name, by_seed in results.items()},
            "mean": means, "std": spreads, "noise": noise, "refined_gain_vs_habit": gain,
            "refined_minus_tuned": to_tuned, "verdict_vs_habit": verdict, "pilots": pilots}


if __name__ == "__main__":
    sys.exit(main())
