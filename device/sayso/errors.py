"""The one exception root; each leaf also inherits the stdlib error it resembles."""


class SaysoError(Exception):
    """Root of every error sayso raises on purpose; its message says what to do next."""


class ConfigError(SaysoError, ValueError):
    """The configuration file has an unknown key, a wrong type or a value out of range."""


class ModelMissing(SaysoError, FileNotFoundError):
    """A model file is not in the models directory; `sayso models fetch` puts it there."""


class ModelCorrupt(SaysoError, ValueError):
    """A model file's size or sha256 does not match the manifest."""


class ModelUnreadable(SaysoError, PermissionError):
    """A model file is there but this user cannot read it."""


class UnknownModel(SaysoError, KeyError):
    """A model name that the manifest does not list."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0])


class FetchFailed(SaysoError, ConnectionError):
    """Every source of a model failed; the message names each source and its error."""


class DiskFull(SaysoError, OSError):
    """No space left while writing a model or the turn log."""


class LogInUse(SaysoError, BlockingIOError):
    """Another process writes this turn log; the message names its pid."""


class StageError(SaysoError, RuntimeError):
    """A pipeline stage did not start or stop as it must."""


class ChannelClosed(SaysoError, EOFError):
    """A put or get on a channel that has been closed."""


class DeviceNotFound(SaysoError, LookupError):
    """No audio device matches the configured name; the message lists the ones that exist."""


class ScenarioError(SaysoError, ValueError):
    """A scenario file is not valid: the message names the file, the step and the key."""


class ScenarioFailed(SaysoError, TimeoutError):
    """A scenario's `wait` was not met in time: the message names the step and the state it was in."""

    report: dict | None = None
    """The report of what the run did up to the step that failed (set by the simulation that raised it)."""


class DeviceFailed(SaysoError, OSError):
    """An audio device was found but does not work (no frames from the mic, a stream that will not open)."""


class LLMServerFailed(SaysoError, ConnectionError):
    """The LAN LLM server did not answer: `why` says how (unreachable, http_401, no_first_token, ...)."""

    def __init__(self, why: str, detail: str):
        super().__init__(f"LLM server {why}: {detail}")
        self.why = why


class LLMUnavailable(SaysoError, ConnectionError):
    """No backend can answer this turn; `apology` is the one line to say so the person is not met with silence."""

    def __init__(self, message: str, apology: str, why: str):
        super().__init__(message)
        self.apology, self.why = apology, why
