"""Tools that look at a trained model or a run from the outside: training-log curves and
timing (``logs``), FLOPs and parameters (``flops``), inference speed (``speed``), confusion
matrices, dataset browsing and result analysis. Each module is one tool's logic; the
``vistra <tool>`` front-ends live in :mod:`vistra.cli`.

Kept import-free: each tool imports only the modules it uses.
"""
