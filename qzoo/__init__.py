"""qzoo: the deep Q-learning toolkit."""

__version__ = "0.1.0"
