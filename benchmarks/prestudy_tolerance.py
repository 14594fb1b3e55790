"""Pre-study for RefineOptions.tolerance on the dev tasks only, run before any held-out task:
linear vs refined (tolerance 1, 1.25, 1.5, 2) from the same linear run, 3 seeds. Output: results/tolerance_prestudy.txt.

    python benchmarks/prestudy_tolerance.py   # about 15 min on 2 CPU cores
"""

import sys
import warnings
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "scripts")]
torch.set_num_threads(1)
warnings.simplefilter("ignore")
import bench_registry as br
import bench_tasks as bt

from hf_lrschedule import refinement_details

TOLS = [1.0, 1.25, 1.5, 2.0]


def study(label, p, T, lr, warmup, seeds=(0, 1, 2)):
    lin, res = [], {t: [] for t in TOLS}
    peaks = {t: [] for t in TOLS}
    for s in seeds:
        src = bt.run_loop(
            p,
            spec={"kind": "hf", "name": "linear"},
            lr=lr,
            seed=s,
            num_training_steps=T,
            warmup=warmup,
            wsd_decay=T // 5,
            num_evals=1,
        )
        lin.append(src["eval_loss"])
        for t in TOLS:
            d = refinement_details(src["grad_norms_l2"], T, tolerance=t)
            peaks[t].append(d.peak_fraction)
            r = bt.run_loop(
                p,
                spec={"kind": "table", "table": d.multipliers.tolist()},
                lr=lr,
                seed=s,
                num_training_steps=T,
                warmup=0,
                wsd_decay=T // 5,
                num_evals=1,
            )
            res[t].append(r["eval_loss"])
    lin = np.array(lin)
    sd = lin.std(ddof=1)
    line = f"{label}: linear {lin.mean():.5f} sd {sd:.5f} |"
    for t in TOLS:
        v = np.array(res[t])
        d = v - lin
        tag = "~" if abs(d.mean()) < max(sd, v.std(ddof=1)) else ("+" if d.mean() > 0 else "-")
        line += f" tol{t}: {100 * d.mean() / lin.mean():+.2f}%{tag} pk{np.mean(peaks[t]):.2f} |"
    print(line, flush=True)


for name in ["caravan", "default", "cells", "spam7", "oj", "attrition", "biopsy", "mlc_churn", "pima"]:
    p = bt.logreg_problem({"batch_size": 32, "l2": 0.0}, name)
    grid = [0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4]
    sc = {}
    for lr in grid:
        r = bt.run_loop(
            p,
            spec={"kind": "hf", "name": "linear"},
            lr=lr,
            seed=0,
            num_training_steps=1000,
            warmup=0,
            wsd_decay=200,
            num_evals=1,
        )
        sc[lr] = r["eval_loss"] if r["eval_loss"] is not None else np.inf
    study(f"{name} lr={min(sc, key=sc.get)}", p, 1000, min(sc, key=sc.get), 0)
for tname, lr in [("fashion_mnist_sgdm", 0.05), ("fashion_mnist_adam", 0.004), ("shakespeare_llama", 4e-3)]:
    t = br.TASKS[tname]
    cfg = t.config(False)
    p = t.problem(cfg, "main")
    study(tname, p, cfg["steps"], lr, cfg["warmup"])
