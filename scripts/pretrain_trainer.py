"""Recipe 2b: the same from-scratch pretraining as `pretrain_accelerate.py`, through the `Trainer`.

    python scripts/pretrain_trainer.py --config recipes/pretrain_shakespeare.yaml
    hf-lrschedule pilot --fraction 0.1 -- python scripts/pretrain_trainer.py --config recipes/pretrain_shakespeare.yaml
    python scripts/pretrain_trainer.py --config recipes/pretrain_shakespeare.yaml --lr_scheduler_type cosine
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, field

import torch
from transformers import LlamaForCausalLM, Trainer, TrainingArguments
from trl import TrlParser

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pretrain_data import byte_blocks
from recipe_data import tiny_llama_config

from hf_lrschedule import GradNormRecorderCallback
from hf_lrschedule.integrations.accelerate import leave_process_group


@dataclass
class ModelArguments:
    corpus: str = field(default="shakespeare")
    block_size: int = field(default=128)
    layers: int = field(default=4)
    hidden: int = field(default=128)
    max_eval_blocks: int = field(default=64)


def main() -> None:
    model_args, training_args = TrlParser((ModelArguments, TrainingArguments)).parse_args_and_config()
    train, evaluation, vocab = byte_blocks(
        model_args.corpus, model_args.block_size, max_eval_blocks=model_args.max_eval_blocks, seed=training_args.seed
    )
    torch.manual_seed(training_args.seed)
    config = tiny_llama_config(vocab, hidden_size=model_args.hidden, num_hidden_layers=model_args.layers,
                               intermediate_size=4 * model_args.hidden, max_position_embeddings=model_args.block_size)
    trainer = Trainer(model=LlamaForCausalLM(config), args=training_args, train_dataset=train, eval_dataset=evaluation)
    GradNormRecorderCallback().attach(trainer)
    trainer.train()
    metrics = trainer.evaluate()
    metrics["perplexity"] = math.exp(metrics["eval_loss"])
    if trainer.is_world_process_zero():
        os.makedirs(training_args.output_dir, exist_ok=True)
        with open(os.path.join(training_args.output_dir, "eval_results.json"), "w") as handle:
            json.dump(metrics, handle, indent=1)
    print(f"eval_loss {metrics['eval_loss']:.4f}")


if __name__ == "__main__":
    main()
    leave_process_group()  # after main() has dropped the model: see its docstring
