"""The one "does this look secret?" rule, for values and for the names that hold them.

Why one module: the recipe checker (refuse credentials in a recipe), ``gpuwizard plan``
(hide secret-looking env values) and the output masker (which values of an uploaded file
to mask) each had their own word list, and they disagreed (``plan`` showed an
``AUTH_HEADER`` the masker hid). Both rules live here; callers import them.
"""

from __future__ import annotations

import re

# Option keys that hold secrets in rclone backends (and OAuth in general). A recipe
# may name a file (KEY_file) or an environment variable (KEY_env) holding them instead.
SECRET_KEYS = frozenset({
    "token", "access_token", "refresh_token", "client_secret", "pass", "password",
    "secret_access_key", "service_account_credentials", "private_key", "key", "bearer_token",
    "session_token", "api_key", "sas_url", "account_key", "password2",
})

# Words that make a variable or option *name* secret-looking (``HF_TOKEN``, ``db_password``,
# ``AUTH_HEADER``); names ending in _type/_uri/_url describe a secret rather than hold one.
_SECRET_NAME_WORDS = ("token", "secret", "pass", "key", "credential", "auth")
_NOT_SECRET_SUFFIXES = ("_type", "_uri", "_url")

_SECRET_VALUE_RES = (
    re.compile(r'"(access|refresh)_token"\s*:'),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"\bya29\.[A-Za-z0-9_-]{20,}"),          # Google OAuth access token
    re.compile(r"\b1//0[A-Za-z0-9_-]{20,}"),            # Google OAuth refresh token
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),                # AWS access key id
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"),      # GitHub token
)


def looks_secret(value: str) -> bool:
    """True when a string value carries a credential (OAuth token JSON, private key ...)."""
    return any(r.search(value) for r in _SECRET_VALUE_RES)


def secret_name(name: object) -> bool:
    """True when a variable or option name suggests its value is a secret."""
    k = str(name).lower()
    return any(w in k for w in _SECRET_NAME_WORDS) and not k.endswith(_NOT_SECRET_SUFFIXES)
