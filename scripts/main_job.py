"""The README's main job: LoRA fine-tuning of SmolLM2-135M on Shakespeare, refined vs linear, on a CPU.

1. a pilot (10 % of the steps) records the gradient norms and refines the schedule, then the full run uses it
   (`hf-lrschedule pilot -- python scripts/finetune_lora.py ...`);
2. a linear-decay baseline of the same length;
3. the eval losses side by side, and the schedule picture.

    python scripts/main_job.py                  # about 10 minutes on a 2-core CPU
    python scripts/main_job.py --max_steps 40   # a quicker look
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(command: list[str]) -> None:
    print(f"\n$ {' '.join(command)}", flush=True)
    subprocess.run(command, check=True, cwd=ROOT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="recipes/lora_smollm2_cpu.yaml")
    parser.add_argument("--max_steps", type=int, default=150)
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--out", default="runs/main_job")
    args = parser.parse_args()

    out = ROOT / args.out
    recipe = [sys.executable, "scripts/finetune_lora.py", "--config", args.config, "--max_steps", str(args.max_steps)]
    start = time.perf_counter()
    from recipe_data import prepare_smollm2, prepare_text_corpus

    print("[main job] preparing the corpus and the model (cached after the first run)", flush=True)
    prepare_text_corpus("shakespeare")
    prepare_smollm2()

    print("\n[main job] 1/2: pilot + refined full run", flush=True)
    run([
        sys.executable, "-m", "hf_lrschedule.cli", "pilot", "--fraction", str(args.fraction), "--out", str(out / "pilot"),
        "--", *recipe, "--lr_scheduler_type", "linear_refined", "--output_dir", str(out / "linear_refined"),
    ])
    print("\n[main job] 2/2: linear-decay baseline", flush=True)
    run([*recipe, "--lr_scheduler_type", "linear", "--output_dir", str(out / "linear")])

    rows = {name: json.loads((out / name / "eval_results.json").read_text()) for name in ("linear", "linear_refined")}
    manifest = json.loads((out / "pilot" / "manifest.json").read_text())
    base = rows["linear"]["eval_loss"]
    print(f"\n[main job] done in {time.perf_counter() - start:.0f} s. SmolLM2-135M + LoRA, Shakespeare, {args.max_steps} steps:")
    print(f"{'schedule':<16}{'eval loss':>10}{'vs linear':>11}")
    for name, metrics in rows.items():
        print(f"{name:<16}{metrics['eval_loss']:>10.4f}{100 * (metrics['eval_loss'] - base) / base:>+10.2f}%")
    print(f"pilot: {manifest['pilot_steps']} steps, {manifest['pilot_seconds']:.0f} s; refined peak at "
          f"{100 * manifest['peak_fraction']:.1f}% of training")
    print(f"schedule picture: {manifest['plot']}")
    summary = {"max_steps": args.max_steps, "fraction": args.fraction, "eval_loss": {k: v["eval_loss"] for k, v in rows.items()},
               "pilot": {k: manifest[k] for k in ("pilot_steps", "pilot_seconds", "peak_fraction", "plot")}}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
