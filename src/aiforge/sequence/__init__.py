"""Step 1 RNNs, seq2seq, transformers and LLM fine-tuning; step 5 NLP."""
