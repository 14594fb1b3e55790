"""A stock HfArgumentParser + Trainer script: it never imports hf_lrschedule (the tests check the flag still works)."""

import hashlib
import json
from dataclasses import dataclass, field

from tiny import ByteLMDataset, tiny_llama
from transformers import HfArgumentParser, Trainer, TrainerCallback, TrainingArguments


@dataclass
class ScriptArguments:
    result_file: str = field(default="result.json", metadata={"help": "may contain {rank}"})
    resume: str = field(default="")
    lora: bool = field(default=False)
    crash_at_step: int = field(default=0, metadata={"help": "raise at this step (tests of failing runs)"})
    fault_at_step: int = field(
        default=0, metadata={"help": "multiply the logits by 300 at this optimizer step: a loss spike and a gradient-norm "
                             "explosion (tests of the health checks)"}
    )


class CrashAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise RuntimeError(f"simulated crash at step {self.step}")


def scale_logits_at(model, trainer, step: int, factor: float = 300.0) -> None:
    """A forward hook on the LM head that multiplies the logits by `factor` while the Trainer takes update `step`."""
    head = model.get_output_embeddings()

    def hook(module, inputs, output):
        return output * factor if module.training and trainer.state.global_step + 1 == step else None

    head.register_forward_hook(hook)


def main() -> None:
    script_args, training_args = HfArgumentParser((ScriptArguments, TrainingArguments)).parse_args_into_dataclasses()
    model = tiny_llama()
    if script_args.lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], lora_dropout=0.0))
    callbacks = [CrashAt(script_args.crash_at_step)] if script_args.crash_at_step else []
    trainer = Trainer(model=model, args=training_args, train_dataset=ByteLMDataset(), callbacks=callbacks)
    if script_args.fault_at_step:
        scale_logits_at(model, trainer, script_args.fault_at_step)
    trainer.train(resume_from_checkpoint=script_args.resume or None)
    lrs = {e["step"]: e["learning_rate"] for e in trainer.state.log_history if "learning_rate" in e}
    losses = {e["step"]: e["loss"] for e in trainer.state.log_history if "loss" in e}
    schedule = getattr(trainer.lr_scheduler.lr_lambdas[0], "table", None)
    digest = hashlib.sha256(json.dumps(schedule).encode()).hexdigest()
    result = {"lrs": lrs, "losses": losses, "world_size": training_args.world_size, "schedule_sha256": digest}
    with open(script_args.result_file.format(rank=training_args.process_index), "w") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    main()
    # Imported only now, so that the run above never saw an explicit `import hf_lrschedule`.
    from hf_lrschedule.integrations.accelerate import leave_process_group

    leave_process_group()
