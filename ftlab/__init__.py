"""ftlab: compare fine-tuning strategies for pretrained image models in JAX/Flax."""

__version__ = "0.1.0"
