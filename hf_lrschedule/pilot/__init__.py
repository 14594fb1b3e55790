"""Pilot runs: a fraction of the training budget records the gradient norms, then the full run is refined.

* `protocol`: how `hf-lrschedule pilot` and the training processes it starts talk (two environment variables and
  the files of the pilot folder; stdlib only, also loaded by the start-up hook, by its path);
* `options`: `PilotOptions`, the pilot's own settings (the CLI flags are made from it);
* `runner`: the parent side (runs the command twice, refines in between, caches the result);
* `phase`: the child side shared by the Trainer and accelerate loops (the phase's `lr_scheduler_kwargs`, the
  pilot's plan, progress lines);
* `trainer`: the Trainer patch and the in-process `run_pilot` (accelerate loops: `integrations.accelerate.RefinedRun`).

Nothing is imported here: importing one of them loads only what it needs.
"""
