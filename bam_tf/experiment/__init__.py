"""Experiments: the model folder and its identity, trials shared out
between processes, evaluation and written outputs, teachers, recipes."""
