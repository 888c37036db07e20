"""The error tree of Syncgate: every failure is named by what the caller should do.

    SyncgateError
    ├── VendorError                 raised by adapters; never an httpx exception
    │   ├── RetriableError          try the same call again later
    │   │   ├── RateLimited         ... not before ``retry_after`` seconds (429)
    │   │   └── TransientError      ... after a backoff (5xx, timeout, connection error)
    │   └── FatalError              retrying the same call cannot help
    │       ├── NotFound            the object (or its scope) does not exist (404, 410)
    │       ├── AuthError           credentials missing, wrong or not allowed (401/403)
    │       └── Rejected            the vendor refused the payload (400/409/422), with its message
    ├── RequestError                an operator's request the services refuse, with the reason
    │   ├── Missing                 an unknown work item, link or system
    │   ├── AlreadyLinked           the vendor object is linked to a work item already
    │   ├── StateConflict           the request does not fit the current state (nothing to retry)
    │   └── Invalid                 well-formed, but not meaningful (nothing to change)
    ├── WebhookError                a webhook delivery we refuse; carries the HTTP status to answer
    │   ├── SignatureInvalid        401: missing, wrong or stale signature
    │   ├── MalformedPayload        400: the body is not JSON
    │   └── UnreadablePayload       422: JSON, but not a payload this vendor sends
    └── ConfigError                 config.yaml is invalid; carries every problem found, each with
                                    file, line and key

Adapters translate at their boundary (``adapters/_http.py``) so that the dispatcher and the
pollers only ever see these families.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

E = TypeVar("E", bound=BaseException)


def detached(exc: E) -> E:
    """``exc`` with its traceback, and those of its causes and contexts, dropped: for an
    error kept after the frame that caught it. A traceback holds every frame it passed
    through, and those frames hold their locals: if one of them is what keeps the error
    (``result.error = exc``), the two form a reference cycle that only the garbage
    collector's full passes free, and the gateway runs them rarely (``GC_THRESHOLDS`` in
    app/cli/main.py). The message, type and attributes are what is kept, and all the
    callers use."""
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        current.__traceback__ = None
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return exc


class SyncgateError(Exception):
    """Root of every error Syncgate raises on purpose."""


class VendorError(SyncgateError):
    """A call to a vendor failed; ``system`` names the vendor, ``status`` the HTTP status if any."""

    def __init__(self, system: str, message: str, *, status: int | None = None) -> None:
        super().__init__(f"{system}: {message}" + (f" (HTTP {status})" if status else ""))
        self.system = system
        self.message = message
        self.status = status


class RetriableError(VendorError):
    """The same call may succeed later."""


class RateLimited(RetriableError):
    """The vendor answered 429; wait ``retry_after`` seconds before calling it again."""

    def __init__(
        self, system: str, message: str, *, retry_after: float, status: int | None = 429
    ) -> None:
        super().__init__(system, message, status=status)
        self.retry_after = retry_after


class TransientError(RetriableError):
    """A 5xx, a timeout or a connection error: retry with backoff."""


class FatalError(VendorError):
    """Retrying the same call cannot help; the write is dead-lettered with this reason."""


class NotFound(FatalError):
    """The object or its scope does not exist at the vendor."""


class AuthError(FatalError):
    """The credentials are missing, wrong, or lack the needed scope."""


class Rejected(FatalError):
    """The vendor refused the request as invalid; ``message`` is the vendor's own reason."""


class RequestError(SyncgateError):
    """A request (from the admin API or the command line) that the services refuse;
    ``title`` names the kind, the message says what is wrong."""

    title = "Bad request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Missing(RequestError):
    """An unknown work item, link or system."""

    title = "Not found"


class AlreadyLinked(RequestError):
    """The vendor object is linked to a work item already (``owner``, when known)."""

    title = "Already linked"

    def __init__(self, message: str, *, owner: str | None = None) -> None:
        super().__init__(message)
        self.owner = owner


class StateConflict(RequestError):
    """The request does not fit the current state (e.g. a write that is not pending)."""

    title = "Conflict"


class Invalid(RequestError):
    """The request is well-formed but not meaningful (e.g. it changes nothing)."""

    title = "Invalid request"


class WebhookError(SyncgateError):
    """A webhook delivery that is refused; ``http_status`` is what the receiver answers."""

    http_status = 400

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SignatureInvalid(WebhookError):
    """The signature is missing, does not match any configured secret, or is too old."""

    http_status = 401


class MalformedPayload(WebhookError):
    """The body is not valid JSON."""

    http_status = 400


class UnreadablePayload(WebhookError):
    """The body is JSON, but not in a shape this vendor sends."""

    http_status = 422


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a config file: where it is and what is wrong."""

    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.key}: {self.message}"


class ConfigError(SyncgateError):
    """The configuration is invalid; ``issues`` lists every problem found, not just the first."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))
