"""The exceptions clickback raises, one tree, mapped to HTTP in one place (`web.errors`).

    ClickbackError                 code, message, field
     +-- InputError                (400) the caller sent something invalid
     |    +-- NotFoundError        (404) the named object does not exist
     |    +-- ConflictError        (409) the change contradicts stored state
     +-- AuthError                 (401) no or bad credentials
     |    +-- PermissionDeniedError (403) credentials lack the right
     +-- UnavailableError          (503) storage or the writer failed; retry later
     +-- ConfigError               bad settings, found at start-up

A rejected postback is not an exception: it is an outcome (see `domain.postback`).
Exceptions are for callers of the admin API and the CLI, and for the unexpected.
"""

from __future__ import annotations


class ClickbackError(Exception):
    status = 500
    code = "error"

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.field = field


class InputError(ClickbackError):
    status = 400
    code = "invalid"


class NotFoundError(InputError):
    status = 404
    code = "not_found"


class ConflictError(InputError):
    status = 409
    code = "conflict"


class AuthError(ClickbackError):
    status = 401
    code = "unauthorized"


class PermissionDeniedError(AuthError):
    status = 403
    code = "forbidden"


class UnavailableError(ClickbackError):
    status = 503
    code = "unavailable"


class ConfigError(ClickbackError):
    code = "config"
