"""Domain exceptions. Code below the API raises these; each router turns them into its own body."""


class SluiceError(Exception):
    """Base of every error Sluice raises on purpose."""


class InvalidInput(SluiceError):
    """The request cannot be carried out as asked (a 400)."""


class NotFound(SluiceError):
    """The named thing does not exist (a 404)."""


class Conflict(SluiceError):
    """The request clashes with the current state, e.g. a lock held by another run (a 409)."""


class ConfigurationError(SluiceError):
    """A setting or block is wrong; the message names the field."""


class EngineUnavailable(SluiceError):
    """The search engine could not be reached or answered with a server error."""


class IndexNotReady(SluiceError):
    """A freshly built index failed the readiness gate; nothing was promoted."""


class Unauthorized(SluiceError):
    """No credentials, or credentials that prove nothing (a 401)."""


class Forbidden(SluiceError):
    """Valid credentials without the right to this tenant or action (a 403)."""


class RateLimited(SluiceError):
    """Too many requests from one client; ``retry_after`` says in how many seconds to try again (a 429)."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after
