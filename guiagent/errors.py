"""The typed error tree.

Every failure guiagent raises on purpose is a :class:`GuiAgentError`, so callers can catch the family
they care about (a device that went away, a corrupt record, a bad config) without string matching::

    GuiAgentError
    ├── ConfigError            a config file or value is invalid (names the file and key path)
    ├── DataError              a dataset file or record is corrupt (names the file and record)
    ├── ActionError            an action cannot be converted or executed
    │   └── ActionParseError   model text is not a valid action (see actions.ParseFailure)
    ├── DeviceError            anything between guiagent and a device
    │   ├── DeviceTimeout      the device did not answer within the timeout
    │   ├── DeviceLost         the connection to the device is gone
    │   └── DeviceNotReady     the device answers but is not usable (not booted, blank screen)
    ├── PolicyError            the policy backend or server failed
    │   ├── PolicyTimeout
    │   └── WeightSyncError
    └── FarmError              broker, worker or episode scheduling failed
"""

from __future__ import annotations


class GuiAgentError(Exception):
    """Base of every error guiagent raises on purpose."""


class ConfigError(GuiAgentError):
    """A config file or value is invalid."""


class DataError(GuiAgentError):
    """A dataset file or record is corrupt or does not follow its format.

    Args:
        message: What is wrong.
        file: The file the record came from.
        record: Which record (index, episode id, line number) inside the file.
    """

    def __init__(self, message: str, *, file: str | None = None, record: str | int | None = None):
        self.message = message
        self.file = file
        self.record = record
        where = ", ".join(p for p in (f"file {file}" if file else "", f"record {record}" if record is not None else "") if p)
        super().__init__(f"{where}: {message}" if where else message)


class ActionError(GuiAgentError):
    """An action cannot be converted to a format or executed on a device."""


class ActionParseError(ActionError):
    """Model text is not a valid action, where a caller needs an exception.

    ``guiagent.actions.parse_action`` never raises: it returns a ``ParseFailure`` that rewards and
    metrics count. Code that cannot go on without an action raises this with the failure's reason.
    """


class DeviceError(GuiAgentError):
    """A device call failed."""


class DeviceTimeout(DeviceError):
    """The device did not answer within the configured timeout."""


class DeviceLost(DeviceError):
    """The connection to the device is gone (process died, socket closed, adb offline)."""


class DeviceNotReady(DeviceError):
    """The device answers but is not usable yet: not booted, launcher not focused, blank screen."""


class PolicyError(GuiAgentError):
    """The policy backend or server failed."""


class PolicyTimeout(PolicyError):
    """The policy server did not answer within the timeout, after bounded retries."""


class WeightSyncError(PolicyError):
    """New weights could not be pushed to the serving policy."""


class FarmError(GuiAgentError):
    """The broker, a worker or episode scheduling failed."""
