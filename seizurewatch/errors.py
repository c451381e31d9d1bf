"""User-facing errors: each one is printed as a single clear line, never a traceback."""


class SeizurewatchError(Exception):
    """Base class for errors caused by input the user controls (files, config, broker)."""

    exit_code = 2


class ConfigError(SeizurewatchError):
    """A config or device-profile file is invalid."""


class DataError(SeizurewatchError):
    """A recording, annotation or stream does not match what was expected."""


class ModelError(SeizurewatchError):
    """A model file is missing, corrupt, or its metadata does not match."""


class BrokerError(SeizurewatchError):
    """The MQTT broker cannot be reached or refused us."""

    exit_code = 3
