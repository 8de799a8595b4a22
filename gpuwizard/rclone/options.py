"""A recipe remote's options -> what goes on ``rclone config create``'s command line and
what must travel as a secret file.

Secrets never reach a command line (``ps`` shows every argv, and the executor runs each
step as ``bash -c SCRIPT``): secret files are uploaded 0600 over SFTP and each step
reads them on the host into ``RCLONE_CONFIG_<NAME>_<KEY>`` environment variables with
the bash builtin ``$(<file)``, which starts no process. Environment variables are only
readable by the same user (``/proc/PID/environ`` is 0400).

Pure: nothing here reads an environment variable or writes a file (``gpuwizard plan``
calls it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from gpuwizard.recipe import Remote
from gpuwizard.secretcheck import SECRET_KEYS
from gpuwizard.shell import q, qpath
from gpuwizard.steps import Upload

HOST_SECRETS = "~/.config/gpuwizard/secrets"  # on the host; SFTP paths are relative to home

# rclone options whose *value* is a path to a key file; the file is uploaded and the
# option given the host path.
NATIVE_FILE_OPTIONS = {"service_account_file", "key_file"}
# rclone options of type password: stored obscured (`rclone obscure -` reads stdin).
OBSCURED_KEYS = {"pass", "password", "password2"}


@dataclass(frozen=True)
class SecretOpt:
    """A remote option whose value must come from a secret file on the host."""

    key: str             # the rclone option (token, client_secret, pass ...)
    local: str           # local file to upload ("$NAME" for env)
    remote: str          # host path (~/...)
    as_path: bool = False  # the option takes the file's path (service_account_file, key_file)
    obscure: bool = False  # rclone wants the value obscured (pass, password)
    env: str | None = None  # the local environment variable holding the value (KEY_env)


def env_name(remote: str, key: str) -> str:
    """rclone reads option KEY of remote NAME from ``RCLONE_CONFIG_NAME_KEY``."""
    return f"RCLONE_CONFIG_{remote.upper()}_{key.upper()}"


def opt_str(v: Any) -> str:
    """An option value as rclone's command line wants it (booleans lower-case)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def split_options(name: str, remote: Remote) -> tuple[dict[str, Any], list[SecretOpt], list[str]]:
    """(plain options, secret options, problems) for one recipe remote."""
    plain: dict[str, Any] = {}
    secrets: list[SecretOpt] = []
    problems: list[str] = []
    for key, value in remote.options.items():
        if key in NATIVE_FILE_OPTIONS:
            base = key[: -len("_file")]
            secrets.append(SecretOpt(key, str(value), f"{HOST_SECRETS}/{name}.{base}", as_path=True))
        elif key.endswith("_file") and key[: -len("_file")] in SECRET_KEYS:
            base = key[: -len("_file")]
            secrets.append(SecretOpt(base, str(value), f"{HOST_SECRETS}/{name}.{base}", obscure=base in OBSCURED_KEYS))
        elif key.endswith("_env") and key[: -len("_env")] in SECRET_KEYS:
            base = key[: -len("_env")]
            var = str(value)
            # The executor reads the variable when the run starts and uploads its value
            # from memory like every other secret (SFTP 0600, masked in logs, never on a
            # command line); it is never written to the local disk. Unset -> that step fails.
            secrets.append(SecretOpt(base, f"${var}", f"{HOST_SECRETS}/{name}.{base}",
                                     obscure=base in OBSCURED_KEYS, env=var))
        elif key in SECRET_KEYS:
            # The loader refuses these; a remote built in code must not slip one onto argv.
            problems.append(f"rclone.remotes.{name}.{key}: a secret written inline would be visible in the "
                            f"process list; put it in a file and write {key}_file (or {key}_env) instead")
        else:
            plain[key] = value
    if secrets and not re.match(r"^[A-Za-z0-9_]+$", name):
        problems.append(f"rclone.remotes.{name}: a remote with secret files needs a name of letters, digits "
                        "and _ only (it becomes an environment variable on the host)")
    return plain, secrets, problems


def create_argv(name: str, type_: str, plain: Mapping[str, Any], *, tunnel: bool = False) -> list[str]:
    """The words of ``rclone config create`` with every answer given up front, unquoted.

    ``plain`` must hold no secret (they travel in the environment). Drive gets
    ``config_refresh_token=false`` and ``config_change_team_drive=false`` unless given,
    so a complete answer set finishes in one call; ``tunnel`` adds
    ``config_is_local=true``: rclone on the host waits for the browser login that the
    user's SSH tunnel carries to it.
    """
    words = ["rclone", "config", "create", name, type_, *(f"{k}={opt_str(v)}" for k, v in plain.items())]
    if type_ == "drive":
        if tunnel:
            words.append("config_is_local=true")
        if "config_refresh_token" not in plain:
            words.append("config_refresh_token=false")
        if "config_change_team_drive" not in plain:
            words.append("config_change_team_drive=false")
    words.append("--non-interactive")
    return words


def secret_prelude(name: str, secrets: Iterable[SecretOpt]) -> str:
    """Bash exporting each secret from its host file; builtins only, so no argv holds it."""
    out = []
    for s in secrets:
        if s.as_path:
            continue
        path = qpath(s.remote)
        var = env_name(name, s.key)
        out.append(f"test -r {path} || {{ echo {q(f'gpuwizard: {s.remote} is missing on this host: run the rclone.remote.{name} step')} >&2; exit 2; }}")
        if s.obscure:
            out.append(f"{var}=$(rclone obscure - < {path}); export {var}")
        else:
            out.append(f"{var}=$(<{path}); export {var}")
    return "\n".join(out) + ("\n" if out else "")


def uploads(secrets: Iterable[SecretOpt]) -> tuple[Upload, ...]:
    """The secret files the executor sends (SFTP, 0600, masked) before the step runs."""
    return tuple(Upload(local=s.local, remote=s.remote, mode=0o600, secret=True, env=s.env) for s in secrets)
