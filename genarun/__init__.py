"""genarun: a declarative, recursive pipeline-tree runner for generative AI."""

__version__ = "0.1.0"
