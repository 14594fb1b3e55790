"""Tiny models and data for the tests (also imported by the subprocess scripts in tests/scripts)."""

from __future__ import annotations

from pathlib import Path

import torch

SAMPLE_TEXT = Path(__file__).parent / "data" / "sonnets.txt"


def tiny_llama(seed: int = 0, vocab_size: int = 128):
    from recipe_data import tiny_llama_config
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    config = tiny_llama_config(
        vocab_size,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=False,  # transformers' LlamaConfig default, which these tests were written against
    )
    return LlamaForCausalLM(config)


def tiny_trainer(output_dir, *, model=None, callbacks=(), train_dataset=None, **overrides):
    """The tests' Trainer: a tiny Llama on sonnet windows, no reporting or progress bars, seed 0; overrides win."""
    from transformers import Trainer, TrainingArguments

    kwargs = dict(output_dir=str(output_dir), report_to="none", save_strategy="no", disable_tqdm=True, seed=0)
    kwargs.update(overrides)
    return Trainer(
        model=model if model is not None else tiny_llama(),
        args=TrainingArguments(**kwargs),
        train_dataset=train_dataset if train_dataset is not None else ByteLMDataset(),
        callbacks=list(callbacks),
    )


def prepared_tiny_lm(accelerator, num_windows: int = 256, shuffle: bool = False):
    """(model, AdamW at 1e-2, loader of batch 2) for the accelerate test loops, seeded and prepared."""
    torch.manual_seed(0)
    model = tiny_llama()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    loader = torch.utils.data.DataLoader(ByteLMDataset(num_windows=num_windows), batch_size=2, shuffle=shuffle)
    return accelerator.prepare(model, optimizer, loader)


class ByteLMDataset(torch.utils.data.Dataset):
    """Fixed-length windows of the bytes of a public-domain text (Shakespeare's sonnets), labels = inputs."""

    def __init__(self, seq_len: int = 16, num_windows: int = 64, offset: int = 0):
        data = torch.tensor(list(SAMPLE_TEXT.read_bytes()), dtype=torch.long) % 128
        starts = [(offset + i * seq_len) % (len(data) - seq_len) for i in range(num_windows)]
        self.windows = [data[s : s + seq_len] for s in starts]

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index):
        ids = self.windows[index]
        return {"input_ids": ids, "labels": ids.clone()}
