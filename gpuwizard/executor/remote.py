"""The shell text sent to the host: the step wrapper, its stdin, and the kill commands.

Why the wrapper: OpenSSH ignores "signal" channel requests for sessions without a pty,
and closing a channel does not stop the command. sshd puts each session's command in
its own session/process group, so the wrapper prints its PID (the group id) as the
first line on stderr and ``exec``s the step; a timeout or Ctrl-C kills the whole group
over a second channel of the same connection.

Why stdin carries the step's ``env:`` values: a command line is world-readable on the
host (``ps -eo args``), a process's environment is readable only by its owner. The
step's bash reads ``export`` lines up to a NUL byte from stdin before running anything,
so the values never appear in an argv. The same prelude exports the step's token
(:data:`TOKEN_VAR`): processes that leave the process group (``setsid``) still carry it
in their environment, and the kill commands find them by it in ``/proc/*/environ``
(GNU grep's ``-z``; a process that clears its environment escapes, which the README
says).

Every value that reaches these strings is quoted or checked to be digits/hex.
"""

from __future__ import annotations

import os
import shlex

from gpuwizard.executor.procs import RemoteProc
from gpuwizard.steps import Step

PID_MARK = b"\x1egwpid:"  # precedes the remote process group id on the step's stderr
TOKEN_VAR = "GPUWIZARD_STEP_TOKEN"

# bash's ``read -d ''`` reads a pipe byte by byte, so it takes the prelude and not one
# byte of whatever else the step reads; ``|| true``: an empty stdin is no prelude. On
# the step's first line, so bash's "line N" in error messages is the step's own line N.
_READ_ENV = "IFS= read -r -d '' gwenv || true; eval \"$gwenv\"; unset gwenv; "

# Builtins only (no fork): the login shell's pid, its start time (field 22 of
# /proc/PID/stat; a login shell's name has no spaces) and the boot id, on one line.
_PID_PRELUDE = ("{ read -r x x x x x x x x x x x x x x x x x x x x x gws x </proc/$$/stat; "
                "read -r gwb </proc/sys/kernel/random/boot_id; } 2>/dev/null; "
                "printf '\\036gwpid:%d:%s:%s\\n' $$ \"$gws\" \"$gwb\" >&2")

OURS = "'bash --norc --noprofile -euo pipefail -c '*|'sudo -n -- bash --norc --noprofile -euo pipefail -c '*"


def new_token() -> str:
    """A fresh per-attempt token (hex: safe in any shell text)."""
    return os.urandom(8).hex()


def env_stdin(step: Step, token: str = "") -> bytes:
    """What the wrapper's bash reads first: the step's exports, then a NUL."""
    pairs = list(step.node_env) + list(step.env) + ([(TOKEN_VAR, token)] if token else [])
    if not pairs:
        return b""
    text = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in pairs)
    return text.encode("utf-8", "surrogateescape") + b"\0"


def wrap(script: str, sudo: bool, report_pid: bool = True) -> str:
    """The command line sent to sshd (run by the login shell).

    ``echo $$ >&2; exec ...`` reports the process group id (sshd makes each session's
    command a session leader) before becoming the step, so no extra process stays
    around. ``sudo -n`` never prompts: a missing sudo right fails at once.
    ``--norc``: bash sources bashrc files when it thinks sshd started it, and
    Debian's /etc/bash.bashrc fails under ``-u``; steps must not depend on them anyway.
    """
    inner = f"bash --norc --noprofile -euo pipefail -c {shlex.quote(_READ_ENV + script)}"
    if sudo:
        inner = f"sudo -n -- {inner}"
    return f"{_PID_PRELUDE}; exec {inner}" if report_pid else f"exec {inner}"


def _token_fn(token: str) -> str:
    """``gwt SIG [sudo -n]``: signal every process whose environment carries the step's
    token; true when it signalled one. Run once as the login user, once through
    ``sudo -n`` for a sudo step's root processes."""
    needle = shlex.quote(f"{TOKEN_VAR}={token}")
    return (f'gwt() {{ gs=$1; shift; gn=1; for gf in $("$@" grep -lzxF {needle} /proc/[0-9]*/environ 2>/dev/null); '
            f'do gp=${{gf#/proc/}}; "$@" kill -s "$gs" "${{gp%/environ}}" 2>/dev/null && gn=0; done; return $gn; }}\n')


def _token_kill(sig: str, token: str) -> str:
    if not token:
        return ""
    return f'{_token_fn(token)}gwt {sig}; [ "$(id -u)" = 0 ] || gwt {sig} sudo -n; '


def signal_cmd(sig: str, pid: int | None, token: str = "") -> str:
    """Shell that signals remote process group ``pid`` (its leader alone as a fallback)
    and every process carrying the step's ``token``.

    ``kill -s SIG -- -PGID`` is the form every shell's kill takes (dash, Debian's sh,
    rejects ``kill -SIG -- -PGID``). A ``sudo`` step's processes belong to root: when
    the login user may not signal them, ``sudo -n kill`` does (GCE login users have
    passwordless sudo; elsewhere it fails quietly)."""
    group = (f"{{ kill -s {sig} -- -{pid} || sudo -n kill -s {sig} -- -{pid} || kill -s {sig} {pid} "
             f"|| sudo -n kill -s {sig} {pid}; }} 2>/dev/null; " if pid else "")
    return f"{group}{_token_kill(sig, token)}true"


def stale_kill_script(rp: RemoteProc, grace_ticks: int) -> str:
    """A POSIX sh script (run as ``sh -c``) that stops ``rp``'s process group if it
    is still the process we started, then prints ``stopped``; processes carrying the
    record's token are stopped whatever became of the group (the token is ours alone).
    Signals go as ``kill -s SIG -- -PGID``: dash (Debian's and Ubuntu's sh) rejects
    ``kill -SIG -- -PGID`` and would then signal the leader alone.
    Root processes of a ``sudo`` step are signalled through ``sudo -n`` where the
    login user may use it."""
    p = rp.pid
    if rp.start:
        same = f'[ "${{20}}" = {rp.start} ]'
    else:
        same = f"case \"$(tr '\\0' ' ' </proc/{p}/cmdline 2>/dev/null)\" in {OURS}) true;; *) false;; esac"
    boot = (f'read -r b </proc/sys/kernel/random/boot_id 2>/dev/null; [ "$b" = {rp.boot} ] || return 0\n'
            if rp.boot else "")
    tokens = (f"""{_token_fn(rp.token)}gk=0; gwt TERM && gk=1; [ "$(id -u)" = 0 ] || {{ gwt TERM sudo -n && gk=1; }}
if [ $gk = 1 ]; then sleep 0.{min(9, max(1, grace_ticks))}; gwt KILL; [ "$(id -u)" = 0 ] || gwt KILL sudo -n; fi
true
""" if rp.token else "")
    return f"""grp() {{
{boot}if s=$(cat /proc/{p}/stat 2>/dev/null) && [ -n "$s" ]; then
  s=${{s##*) }}; set -- $s
  {same} || return 0
elif [ -z "{rp.boot}" ] || ! kill -s 0 -- -{p} 2>/dev/null; then
  return 0
fi
k=; [ "$(id -u)" = 0 ] || {{ sudo -n true 2>/dev/null && k="sudo -n"; }}
$k kill -s TERM -- -{p} 2>/dev/null || $k kill -TERM {p} 2>/dev/null
i=0; while {{ kill -s 0 -- -{p} || kill -0 {p}; }} 2>/dev/null && [ $i -lt {grace_ticks} ]; do sleep 0.1; i=$((i+1)); done
if {{ kill -s 0 -- -{p} || kill -0 {p}; }} 2>/dev/null; then
  $k kill -s KILL -- -{p} 2>/dev/null || $k kill -KILL {p} 2>/dev/null
  i=0; while {{ kill -s 0 -- -{p} || kill -0 {p}; }} 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
fi
echo stopped
}}
grp
{tokens}"""


def sftp_path(remote: str) -> str:
    """SFTP paths are relative to the login user's home, which is what ``~`` means."""
    if remote == "~":
        return "."
    if remote.startswith("~/"):
        return remote[2:]
    return remote


SUDO_PROBE = "sudo -n true"


def sudo_problem(host: str, user: str, probe_exit: int | None, stderr: str) -> str:
    """Why ``sudo -n true`` failed, with the fix; empty when it worked. Neither cause
    goes away by retrying, so a sudo step fails at once with this message."""
    if probe_exit == 0:
        return ""
    who = user or "the login user"
    if probe_exit == 127 or "not found" in stderr:
        return (f"{host}: sudo is not installed, and this step needs root: install sudo on the host, or log in "
                f"as root (ssh.user: root).")
    if "password" in stderr:
        return (f"{host}: {who} may not use sudo without a password, and this step needs root: allow it "
                f"(a line '{who} ALL=(ALL) NOPASSWD:ALL' in /etc/sudoers.d/gpuwizard), or log in as root "
                f"(ssh.user: root).")
    first = (stderr.strip().splitlines() or [f"exit code {probe_exit}"])[0]
    return f"{host}: sudo -n true failed ({first}), and this step needs root: fix sudo for {who}, or log in as root."
