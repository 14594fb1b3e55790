"""Shakespeare as fixed-length byte blocks, loaded with `datasets` (shared by the two pretraining recipes)."""

from __future__ import annotations

from recipe_data import byte_tokenizer, load_text_dataset, prepare_text_corpus


def byte_blocks(corpus: str, block_size: int, max_train_blocks: int = 0, max_eval_blocks: int = 0, seed: int = 0):
    """(train, validation) `datasets.Dataset`s of `input_ids`/`labels` blocks of `block_size` byte tokens."""
    tokenizer = byte_tokenizer()
    text = load_text_dataset(prepare_text_corpus(corpus))

    def blocks(batch):
        ids = [t for line in batch["text"] for t in tokenizer(line + "\n")["input_ids"]]
        usable = len(ids) // block_size * block_size
        chunks = [ids[i : i + block_size] for i in range(0, usable, block_size)]
        return {"input_ids": chunks, "labels": [list(c) for c in chunks]}

    data = text.map(blocks, batched=True, batch_size=2000, remove_columns=["text"])
    train, evaluation = data["train"], data["validation"]
    if max_train_blocks:
        train = train.shuffle(seed=seed).select(range(min(max_train_blocks, len(train))))
    if max_eval_blocks:
        evaluation = evaluation.shuffle(seed=0).select(range(min(max_eval_blocks, len(evaluation))))
    return train.with_format("torch"), evaluation.with_format("torch"), len(tokenizer)
