"""The only modules that import torch, transformers and accelerate."""
