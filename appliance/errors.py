"""One error vocabulary for the whole appliance.

Services raise only these; the API turns them into one JSON error shape, the UI into a page,
the CLI into one line and an exit code. Messages are written for the person who will read them
and never contain secrets.
"""

from __future__ import annotations


class VigatraError(Exception):
    """Base of every error the appliance raises on purpose."""

    http_status = 500
    code = "error"

    def __init__(self, message: str, *, detail: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail or {}

    def __str__(self) -> str:
        return self.message


class ConfigError(VigatraError):
    """The configuration cannot be used: bad key, bad value, missing file."""

    code = "config_error"


class Invalid(VigatraError):
    """Input failed validation. ``fields`` maps each offending field to what is wrong with it (``field``
    names a single one); the API answers ``{"error": {"code": "invalid_request", "message", "fields"}}``."""

    http_status = 400
    code = "invalid_request"

    def __init__(self, message: str, *, field: str | None = None, fields: dict[str, str] | None = None,
                 detail: dict[str, object] | None = None) -> None:
        super().__init__(message, detail=detail)
        self.fields: dict[str, str] = dict(fields) if fields else ({field: message} if field else {})
        self.field = field if field is not None else next(iter(self.fields), None)


class NotFound(VigatraError):
    """No such resource, or one the caller may not see (the two are indistinguishable on purpose)."""

    http_status = 404
    code = "not_found"


class Conflict(VigatraError):
    """The request clashes with the current state (duplicate name, already initialised...)."""

    http_status = 409
    code = "conflict"


class Unauthenticated(VigatraError):
    """No valid credentials. The message is deliberately generic."""

    http_status = 401
    code = "unauthenticated"


class Forbidden(VigatraError):
    """Authenticated, but the actor lacks the permission."""

    http_status = 403
    code = "forbidden"


class PasswordChangeRequired(Forbidden):
    """The password is a one-time one (set by `vigatra init` or an admin's reset): nothing but changing it
    in the web interface is allowed until then."""

    code = "password_change_required"


class TooManyRequests(VigatraError):
    """Throttled; ``retry_after`` in seconds."""

    http_status = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: int = 60) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(VigatraError):
    """A dependency the request needs (database, audit trail, key provider) is not available."""

    http_status = 503
    code = "unavailable"


class KeyProviderError(VigatraError):
    """The key-encryption key cannot be obtained or used."""

    code = "key_provider_error"


class IntegrityFailure(VigatraError):
    """A sealed value or an audit record failed authentication: tampering or corruption."""

    code = "integrity_failure"


class VenueError(VigatraError):
    """A venue call failed. ``error_class`` is one of the classes the sync engine and UI act on.

    Messages name the venue and what went wrong in the venue's own words (code, short text);
    they never carry keys, signatures, request URLs with query strings, or employee identity.
    """

    error_class = "transient"
    http_status = 502
    code = "venue_error"

    def __init__(self, venue: str, message: str, *, venue_code: str | None = None,
                 detail: dict[str, object] | None = None) -> None:
        super().__init__(f"{venue}: {message}", detail=detail)
        self.venue = venue
        self.venue_code = venue_code


class VenueAuthError(VenueError):
    """The key is invalid, revoked, expired, or the signature was refused."""

    error_class = "authentication"


class VenuePermissionError(VenueError):
    """The key works but may not call this endpoint (or an IP allow-list blocks us)."""

    error_class = "permission"


class VenueRateLimited(VenueError):
    """The venue throttled us; wait ``retry_after`` seconds."""

    error_class = "rate_limit"

    def __init__(self, venue: str, message: str, *, retry_after: float = 60.0, venue_code: str | None = None) -> None:
        super().__init__(venue, message, venue_code=venue_code)
        self.retry_after = retry_after


class VenueTransient(VenueError):
    """Network failure, timeout, 5xx, maintenance: try again later."""

    error_class = "transient"


class VenueBadData(VenueError):
    """The venue answered something we cannot interpret (schema surprise, malformed JSON)."""

    error_class = "bad_data"


class EgressRefused(VenueError):
    """The egress layer refused a request before it left the box (not on an allowlist)."""

    error_class = "refused"
