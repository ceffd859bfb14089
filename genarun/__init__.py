"""genarun: a declarative, recursive pipeline-tree runner for generative AI."""

__version__ = "0.1.0"

# Before anything compiles them (click, PyYAML, genarun's modules): the regular expressions a
# run's start compiles, as programs compiled earlier (genarun/regex_programs.py says why).
from genarun import regex_programs as _regex_programs

_regex_programs.seed()
