"""giskard-worker: run an ML platform's jobs on your models, in your own Python environment."""

__version__ = "0.1.0"
