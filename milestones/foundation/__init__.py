"""Milestone 1, Foundation Era: an MLP built with your own tinytorch learns to read MNIST digits."""
