"""A Trainer run that SIGKILLs itself right after its first checkpoint is written (tests of crash-safe norms).

Usage: python kill_after_checkpoint.py OUTPUT_DIR {attach,callbacks}. The killer is the first callback, so the
process dies before any later callback's `on_save` runs.
"""

import os
import signal
import sys

from tiny import ByteLMDataset, tiny_llama
from transformers import Trainer, TrainerCallback, TrainingArguments

from hf_lrschedule import GradNormRecorderCallback


class KillRightAfterCheckpoint(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)


def main(output_dir: str, mode: str) -> None:
    args = TrainingArguments(
        output_dir=output_dir, max_steps=12, save_steps=4, logging_steps=1, per_device_train_batch_size=4,
        learning_rate=1e-2, lr_scheduler_type="linear_refined", use_cpu=True, report_to=[], seed=0,
        save_only_model=True, disable_tqdm=True,
    )
    callbacks = [KillRightAfterCheckpoint()]
    if mode == "callbacks":
        callbacks.append(GradNormRecorderCallback())
    trainer = Trainer(model=tiny_llama(), args=args, train_dataset=ByteLMDataset(), callbacks=callbacks)
    if mode == "attach":
        GradNormRecorderCallback().attach(trainer)
    trainer.train()


if __name__ == "__main__":
    main(*sys.argv[1:])
