"""Hydra search-path plugin: ``algorithm.xrpo.*`` in verl's trainer configs, no ``+`` needed.

Hydra refuses overrides of keys its composed config does not declare, and verl's ``ppo_trainer``
has no slot a plugin could fill. So this plugin puts, ahead of verl's own config folder, a copy of
verl's installed ``ppo_trainer.yaml`` whose defaults list has
two more entries: ``xrpo@algorithm.xrpo: xrpo`` (the settings, ``verl_xrpo/conf/xrpo/xrpo.yaml``) and
``xrpo/select_trainer`` (``trainer.v1.trainer_mode`` becomes ``xrpo`` when the estimator is xrpo).
In CPU mode (``verl_xrpo.cpu.mode``) a third entry, ``xrpo/cpu_mode``, adds the CPU preset.
The copy is made from the installed verl at start-up, never shipped, so it follows verl exactly;
every other key and group still comes from verl, also for a config given with ``--config-path``.
Other estimators ignore the extra keys.

Hydra runs this plugin before it composes, so it is also where a mistyped ``algorithm.xrpo.*`` key
on the command line is caught (``verl_xrpo.preflight.refuse_mistyped_keys``): Hydra would refuse it
with advice to append it with ``+``, which is wrong for a typo.
"""

import sys

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class XRPOSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        from verl_xrpo.integration.hydra_config import register_resolvers, trainer_config_dir
        from verl_xrpo.preflight import refuse_mistyped_keys

        refuse_mistyped_keys(sys.argv[1:])
        register_resolvers()
        folder = trainer_config_dir()
        if folder is not None:
            search_path.prepend(provider="verl-xrpo", path=f"file://{folder}")
            search_path.append(provider="verl-xrpo", path="pkg://verl_xrpo.conf")
            # verl's own groups, for configs outside verl (``--config-path``, e.g. this project's
            # configs/) whose defaults start from ppo_trainer: Hydra then no longer looks in verl's.
            search_path.append(provider="verl-xrpo", path="pkg://verl.trainer.config")
