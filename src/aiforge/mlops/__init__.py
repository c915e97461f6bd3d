"""Step 4: serving, monitoring, distributed training, data pipelines, export."""
