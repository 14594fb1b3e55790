"""A stock HfArgumentParser + Trainer script: it never imports hf_lrschedule (the tests check the flag still works)."""

import json
import sys
from dataclasses import dataclass, field

from tiny import ByteLMDataset, tiny_llama
from transformers import HfArgumentParser, Trainer, TrainingArguments


@dataclass
class ScriptArguments:
    result_file: str = field(default="result.json")
    resume: str = field(default="")


def main() -> None:
    script_args, training_args = HfArgumentParser((ScriptArguments, TrainingArguments)).parse_args_into_dataclasses()
    trainer = Trainer(model=tiny_llama(), args=training_args, train_dataset=ByteLMDataset())
    trainer.train(resume_from_checkpoint=script_args.resume or None)
    lrs = {e["step"]: e["learning_rate"] for e in trainer.state.log_history if "learning_rate" in e}
    with open(script_args.result_file, "w") as handle:
        json.dump({"lrs": lrs}, handle)


if __name__ == "__main__":
    main()
