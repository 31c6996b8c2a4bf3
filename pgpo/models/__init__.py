"""Loading and running the VLM without trl: the processor loader, the vision-token ids, the attention and
shared-prefill generation speed-ups (bitwise exact), and the memory estimate of the paper-scale models."""
