"""The farm's settings: where the broker, the result backend and the trajectory store are, and the limits
every episode runs under. Nothing assumes localhost: each address comes from the config file or from the
environment (``GUIAGENT_BROKER_URL``, ``GUIAGENT_RESULT_BACKEND``, ``GUIAGENT_STORE_URL``), so workers on
other hosts reach the broker and the store by address."""

from __future__ import annotations

import json
import os
from typing import Literal

from pydantic import Field, model_validator

from guiagent.config import StrictModel

DeviceKind = Literal["sim", "android", "osworld", "web"]
KINDS: tuple[str, ...] = ("sim", "android", "osworld", "web")

CONFIG_VAR = "GUIAGENT_FARM_CONFIG"
ENV_VARS = {
    "broker_url": "GUIAGENT_BROKER_URL",
    "result_backend": "GUIAGENT_RESULT_BACKEND",
    "store_url": "GUIAGENT_STORE_URL",
}


class FarmConfig(StrictModel):
    """Broker, store and limits of the environment farm (Celery over Redis)."""

    broker_url: str = Field("redis://127.0.0.1:6379/0", description="Celery broker (Redis; a password goes in the URL: redis://:PASSWORD@host:6379/0).")
    result_backend: str | None = Field(None, description="Celery result backend; None uses the broker's Redis. Carries episode metadata only.")
    store_url: str = Field("runs/farm/trajectories", description="Trajectory store every worker writes episodes to: a path or an fsspec URL (s3://...).")
    store_options: dict[str, str] = Field(default_factory=dict, description="fsspec storage options of the store (s3: endpoint_url, key, secret); secrets may come from the environment instead (AWS_*).")
    queue_prefix: str = Field("guiagent", description="Queues are '<prefix>.<kind>' (guiagent.sim, guiagent.android, ...).")
    serializer: Literal["json", "msgpack"] = Field("json", description="Message serializer; pickle is never accepted.")
    visibility_timeout: float = Field(3600.0, gt=0, description="Seconds before an unacknowledged episode (its worker died) is delivered again; longer than the hard time limit.")
    unacked_restore_interval: float = Field(10.0, gt=0, description="Seconds between the workers' scans for unacknowledged episodes past the visibility timeout.")
    soft_time_limit: float = Field(1800.0, gt=0, description="Seconds after which an episode is asked to stop (SoftTimeLimitExceeded: recorded as an error result).")
    time_limit: float = Field(1900.0, gt=0, description="Seconds after which the worker's pool process running an episode is killed and the episode delivered again.")
    episode_retries: int = Field(3, ge=0, description="Times an episode is run again after a device failure before it is given up as an error result.")
    recovery_attempts: int = Field(3, ge=1, description="Tries (snapshot reload, then restart) to bring a sick device back before it is quarantined.")
    recheck_interval: float = Field(10.0, gt=0, description="Seconds between recovery tries of a quarantined device.")
    recheck_attempts: int = Field(30, ge=1, description="Recovery tries of a quarantined device before it stays out of service.")
    result_expires: float = Field(86400.0, gt=0, description="Seconds episode results are kept in the result backend.")

    @model_validator(mode="after")
    def _limits_nest(self) -> FarmConfig:
        if not self.soft_time_limit < self.time_limit < self.visibility_timeout:
            raise ValueError(
                "need soft_time_limit < time_limit < visibility_timeout (an episode must be stopped before it is "
                f"delivered again), got {self.soft_time_limit}, {self.time_limit}, {self.visibility_timeout}")
        return self

    @property
    def devices_key(self) -> str:
        """The Redis hash where every device worker publishes its status (field: the worker's hostname)."""
        return f"{self.queue_prefix}:devices"

    def queue(self, kind: str) -> str:
        """The queue episodes for devices of ``kind`` go to."""
        return f"{self.queue_prefix}.{kind}"

    @classmethod
    def from_env(cls, **overrides: object) -> FarmConfig:
        """The whole config from ``GUIAGENT_FARM_CONFIG`` (JSON) if set, then the address variables
        (``GUIAGENT_BROKER_URL``, ...), then ``overrides``.

        Raises:
            ConfigError: a value is invalid (names the variable's field).
        """
        from guiagent.config import parse_config

        values = json.loads(os.environ[CONFIG_VAR]) if os.environ.get(CONFIG_VAR) else {}
        values.update({field: os.environ[var] for field, var in ENV_VARS.items() if os.environ.get(var)})
        values.update({k: v for k, v in overrides.items() if v is not None})
        return parse_config(values, cls, source="farm settings (GUIAGENT_* environment)")

    def environment(self) -> dict[str, str]:
        """The environment that hands this config to a worker process."""
        return {CONFIG_VAR: self.model_dump_json()}
