"""Errors the user can fix: the app prints them as one line and exits with code 2."""


class UserError(Exception):
    """Bad configuration or unusable input; reported without a traceback (exit code 2)."""


class ConfigError(UserError):
    """The configuration is invalid (unknown key, bad value, impossible backend)."""


class InputError(UserError):
    """The input cannot be used (missing path, unreadable shard, strict-mode malformed record)."""
