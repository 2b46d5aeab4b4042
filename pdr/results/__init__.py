"""Finished runs: loading one as a model (``load``: ``pdr.load_run``), evaluating it on a split
(``evaluation``), predicting new videos with a latent flow model (``inference``) and the HTML report with
GIFs (``report``).

Import from the modules themselves: this package imports none of them, so that ``import pdr`` (which
needs ``load`` only) does not load the data sets and metrics that evaluation uses.
"""
