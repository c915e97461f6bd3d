"""Step 1 RNNs, seq2seq, transformers and LLM fine-tuning; step 5 NLP."""

from aiforge.sequence import adding, bert, finetune, finetune_llm, gpt, seq2seq, t5  # noqa: F401  (registers recipes)
