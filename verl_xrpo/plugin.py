"""Entry point of the ``verl.plugins`` group: verl imports it in every process at ``import verl``.

It decides CPU mode for the process (``verl_xrpo.cpu.mode``: on only without an accelerator, or
when asked), registers the ``xrpo`` advantage estimator, the ``xrpo`` V1 trainer (which verl's
TaskRunner looks up by name), XRPO's trainers for verl's asynchronous modes (under verl's own mode
names, for the xrpo estimator only) and the OmegaConf resolver that picks the ``xrpo`` trainer for
the xrpo estimator. verl swallows plugin import errors at DEBUG level, so failures are logged loudly here
before they propagate; otherwise ``algorithm.adv_estimator=xrpo`` would later fail with a bare
"unknown" error.
"""

import logging

_log = logging.getLogger("verl_xrpo")

try:
    from verl_xrpo.cpu.mode import activate as activate_cpu_mode
    from verl_xrpo.integration.estimator import register
    from verl_xrpo.integration.hydra_config import register_resolvers

    activate_cpu_mode()
    register()
    register_resolvers()
    import verl_xrpo.integration.async_trainer
    import verl_xrpo.integration.trainer  # noqa: F401  (registers trainer.v1.trainer_mode=xrpo)
except Exception:
    _log.exception("verl-xrpo failed to register its verl plugin")
    raise
