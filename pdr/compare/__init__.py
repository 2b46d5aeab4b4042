"""Comparisons of arms trained alike: the run (``comparison``: train, evaluate, write the table and figures),
the arms (``arms``, the sets ``--arms`` names in ``arm_sets``), the trivial predictions every comparison reports
beside them (``trivial``) and the fine-tune protocol (``base``: one trained model every arm starts from;
``finetune``: its schedule and arm set)."""
from .arm_sets import resolve_arms
from .arms import Arm
from .comparison import SELECT_RULES, ComparisonResult, arm_configs, compare, run_status, train_arms

__all__ = ["SELECT_RULES", "Arm", "ComparisonResult", "arm_configs", "compare", "resolve_arms", "run_status",
           "train_arms"]
