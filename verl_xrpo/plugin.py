"""Entry point of the ``verl.plugins`` group: verl imports it in every process at ``import verl``.

verl swallows plugin import errors at DEBUG level, so a failure here is logged loudly before it
propagates; otherwise ``algorithm.adv_estimator=xrpo`` would later fail with a bare "unknown estimator".
"""

import logging

try:
    from verl_xrpo.integration.estimator import register

    register()
except Exception:  # re-raised: verl decides what to do, but the user sees why
    logging.getLogger("verl_xrpo").exception("verl-xrpo failed to register its verl plugin")
    raise
