"""verl-xrpo: XRPO for verl.

``verl_xrpo.core`` holds the algorithm (planning, exemplar bank, advantages) as plain Python and
PyTorch; ``verl_xrpo.integration`` connects it to verl.
"""

__version__ = "0.1.0"
