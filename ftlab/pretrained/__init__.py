"""Pretrained weights: reading PyTorch checkpoints, converting them to Flax, loading them."""
