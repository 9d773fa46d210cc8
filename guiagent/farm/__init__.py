"""The environment farm: device workers on Celery + Redis, each running whole episodes beside its device.

- :mod:`guiagent.farm.config` — :class:`FarmConfig` (broker, store, limits; from the environment).
- :mod:`guiagent.farm.app` — the Celery app and its settings.
- :mod:`guiagent.farm.worker` — the device worker and the episode task.
- :mod:`guiagent.farm.client` — :class:`FarmClient`: episodes, GRPO groups, results as they finish.
- :mod:`guiagent.farm.local` — the local farm (redis-server + MobileSim workers) behind ``guiagent farm``.
"""
