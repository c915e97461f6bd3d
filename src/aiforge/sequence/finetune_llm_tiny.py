"""A tiny, randomly initialised Llama with its own byte-level BPE tokenizer, saved as a normal
Hugging Face model folder.

`sequence.finetune-llm` uses it for its quick setting and its tests: the real base model
(SmolLM2-135M) takes about 20 s just to load, while this one is built and saved in about a
second and then goes through exactly the same code path as any model given by path
(`AutoModelForCausalLM.from_pretrained(folder)`, the tokenizer's chat template, LoRA, saving
and reloading the adapter). It knows nothing until it is trained: that is the point of a
quick setting an untrained model cannot pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

# The ChatML layout SmolLM2 (and many chat models) use, without a system turn: short
# sequences keep the tiny model fast.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> object:
    """A byte-level BPE (GPT-2 style: every byte is a symbol, so no text is out of vocabulary)
    trained on `texts`, wrapped as a transformers tokenizer with the chat template above."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def save_tiny_llama(folder: Path, texts: Iterable[str], *, vocab_size: int = 512,
                    width: int = 64, layers: int = 2, init_std: float = 0.1) -> Path:
    """Train a tokenizer on `texts`, build a random Llama (weights from torch's global RNG,
    so the caller's seed decides them) and save both under `folder`.

    `init_std` is 0.1, not the usual 0.02: the output layer is tied to the frozen embeddings
    and the final RMSNorm fixes the hidden state's norm at about sqrt(width), so a logit can
    be at most sqrt(width) * |embedding| ~ 8 * 0.02 * 8 = 1.3 nats from zero at 0.02, too
    flat a distribution for LoRA to fit anything; at 0.1 the bound is about 6.4."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = train_tokenizer(texts, vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer),  # type: ignore[arg-type]
        hidden_size=width, intermediate_size=2 * width, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        tie_word_embeddings=True, initializer_range=init_std,
        eos_token_id=tokenizer.eos_token_id,  # type: ignore[attr-defined]
        pad_token_id=tokenizer.pad_token_id,  # type: ignore[attr-defined]
        bos_token_id=None,
    )
    folder.mkdir(parents=True, exist_ok=True)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)  # type: ignore[attr-defined]
    return folder
