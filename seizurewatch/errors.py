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


class SourceUnavailable(DataError):
    """A live source is not there (yet): no stream matches, or it does not answer. A service keeps trying."""


class StorageError(SeizurewatchError):
    """The journal's disk is missing or not writable at start: exit 4, which systemd retries."""

    exit_code = 4


class BrokerError(SeizurewatchError):
    """The MQTT broker cannot be reached or refused us. ``transient``: unreachable now, worth retrying
    (a refused login or a failed TLS handshake is not)."""

    exit_code = 3

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient
