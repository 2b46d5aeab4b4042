"""Comparisons of arms trained alike: the run (``comparison``: train, evaluate, write the table and figures),
the arms (``arms``) and the trivial predictions every comparison reports beside them (``trivial``)."""
from .arms import Arm, resolve_arms
from .comparison import SELECT_RULES, ComparisonResult, arm_configs, compare, run_status, train_arms

__all__ = ["SELECT_RULES", "Arm", "ComparisonResult", "arm_configs", "compare", "resolve_arms", "run_status",
           "train_arms"]
