"""mmbench: a benchmark and evaluation harness for multimodal graph learning."""

__version__ = "0.1.0"
