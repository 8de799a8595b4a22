"""The host steps for a recipe's rclone remotes and datasets (what ``plan`` prints).

* ``rclone.install``: rclone >= 1.56 on the host, the pinned official release if not.
* ``rclone.remote.NAME``: ``rclone config create NAME TYPE ... --non-interactive`` with
  every answer up front (:func:`gpuwizard.rclone.options.create_argv`); rclone exits 0
  even when it stopped to ask a question, so its JSON answer goes through
  :mod:`gpuwizard.rclone.config_state`, shipped verbatim to the host.
* ``dataset.SLUG``: ``rclone copy``/``backend copyid`` with ``--use-json-log --stats 1s``
  so :mod:`gpuwizard.progress` turns the stats into Progress events; verify, extract,
  mark done.

Secrets reach rclone through the environment, never argv (see
:mod:`gpuwizard.rclone.options`). Pure functions: nothing here touches a host.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import re

from gpuwizard.rclone.authorize import AUTH_PORT
from gpuwizard.rclone.hints import hint_shell
from gpuwizard.rclone.options import SecretOpt, create_argv, secret_prelude, split_options, uploads
from gpuwizard.recipe import Dataset, Recipe, Remote
from gpuwizard.sharelinks import (DriveLink, ShareLinkError, dataset_source_problem, is_drive_link,
                                  parse_drive_link)
from gpuwizard.shell import q, qpath
from gpuwizard.steps import Step, Upload

MIN_VERSION = (1, 56, 0)  # config --non-interactive/--state (1.56), copyid (1.54), resource_key (1.59 nice-to-have)
DEFAULT_VERSION = "1.68.2"  # installed when the host's rclone is missing or older than MIN_VERSION


def config_state_program() -> str:
    """The source of :mod:`gpuwizard.rclone.config_state`, which the remote step runs on the host."""
    return importlib.resources.files("gpuwizard.rclone").joinpath("config_state.py").read_text(encoding="utf-8")


def install_step(recipe: Recipe) -> Step:
    """Ensure rclone >= 1.56 on the host; install the pinned official release if not.

    Not ``Step.sudo``: the executor would run the cheap version check under sudo too,
    and a host whose rclone is new enough needs no root at all. The install part
    uses ``sudo -n`` itself when the login user is not root.
    """
    version = (recipe.rclone.version if recipe.rclone and recipe.rclone.version else None) or DEFAULT_VERSION
    minimum = ".".join(map(str, MIN_VERSION))
    have = ("gw_v=$(rclone version 2>/dev/null | sed -n '1s/^rclone v\\([0-9][0-9.]*\\).*/\\1/p')\n")
    check = (have + f'[ -n "$gw_v" ] && [ "$(printf \'%s\\n\' {minimum} "$gw_v" | sort -V | head -n 1)" = {minimum} ]\n')
    run = f"""\
{have}echo "rclone on this host: ${{gw_v:-none}}; need >= {minimum}; installing v{version} from downloads.rclone.org"
case "$(uname -m)" in
  x86_64|amd64) gw_arch=amd64 ;;
  aarch64|arm64) gw_arch=arm64 ;;
  armv7l) gw_arch=arm-v7 ;;
  *) echo "gpuwizard: no rclone build for $(uname -m)" >&2; exit 1 ;;
esac
gw_sudo=""
[ "$(id -u)" = 0 ] || gw_sudo="sudo -n"
if ! command -v unzip >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1; then
  $gw_sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $gw_sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq unzip curl ca-certificates
fi
gw_tmp=$(mktemp -d)
trap 'rm -rf "$gw_tmp"' EXIT
gw_zip=rclone-v{version}-linux-$gw_arch.zip
curl -fsSL --retry 3 -o "$gw_tmp/$gw_zip" https://downloads.rclone.org/v{version}/$gw_zip
curl -fsSL --retry 3 -o "$gw_tmp/SHA256SUMS" https://downloads.rclone.org/v{version}/SHA256SUMS
(cd "$gw_tmp" && grep " $gw_zip\\$" SHA256SUMS | sha256sum -c -)
unzip -q -o "$gw_tmp/$gw_zip" -d "$gw_tmp"
$gw_sudo install -m 0755 "$gw_tmp/rclone-v{version}-linux-$gw_arch/rclone" /usr/local/bin/rclone
hash -r
rclone version | awk 'NR == 1'
"""
    return Step(id="rclone.install", title=f"rclone >= {minimum}", run=run, check=check, sudo=False,
                timeout=600, retries=2, phase="data")


def remote_step(name: str, remote: Remote) -> Step:
    """``rclone config create NAME TYPE ... --non-interactive``, then the State check."""
    plain, secrets, problems = split_options(name, remote)
    if problems:
        return _failing_step(f"rclone.remote.{name}", f"rclone remote {name}", problems)
    tunnel = remote.type == "drive" and not secrets and not any(
        k in plain for k in ("env_auth", "config_token", "config_is_local"))
    argv = create_argv(name, remote.type, plain, tunnel=tunnel)
    # A path option's value is a host path (``~`` expands there), so it is quoted as one.
    paths = [q(f"{s.key}=") + qpath(s.remote) for s in secrets if s.as_path]
    words = [q(w) for w in argv[:-1]] + paths + [argv[-1]]
    check = None
    pre = ""
    if tunnel:
        # The token lives only in the host's rclone config; never replace a working one.
        check = f"rclone config show {q(name)} 2>/dev/null | grep '^token = .' >/dev/null\n"
        msg = (f"gpuwizard: remote {name} logs in through an SSH tunnel. From your computer run: "
               f"ssh -L {AUTH_PORT}:localhost:{AUTH_PORT} THIS-HOST, then open the "
               f"http://127.0.0.1:{AUTH_PORT}/auth link printed below in your browser.")
        pre = f"echo {q(msg)}\n"
    run = (_secret_prelude_and_python(name, secrets) + pre + "umask 077\n"
           + f"gw_out=$({' '.join(words)})\n"
           + _state_check_shell(name))
    return Step(id=f"rclone.remote.{name}", title=f"rclone remote {name} ({remote.type})", run=run,
                check=check, uploads=uploads(secrets), timeout=900 if tunnel else 120, phase="data")


def _secret_prelude_and_python(name: str, secrets: list[SecretOpt]) -> str:
    """The secrets into the environment, and python3 present for the State check (said
    before rclone runs, so a host without it does not stop half-way through a login)."""
    msg = "gpuwizard: python3 is needed to check rclone's answer; install it (apt-get install python3)"
    need = f"command -v python3 >/dev/null 2>&1 || {{ echo {q(msg)} >&2; exit 1; }}\n"
    return secret_prelude(name, secrets) + need


def _state_check_shell(name: str) -> str:
    """Bash that fails unless ``$gw_out`` (config create's JSON) says the remote is complete
    (the check is :mod:`gpuwizard.rclone.config_state`), then confirms rclone saved it."""
    label = q(name)
    return (
        "# shellcheck disable=SC2016  # Python source, not shell\n"
        f"printf '%s\\n' \"$gw_out\" | python3 -c {q(config_state_program())} {label}\n"
        f"rclone listremotes | grep -Fx -- {q(name + ':')} >/dev/null || "
        f"{{ echo {q(f'gpuwizard: remote {name} was not saved')} >&2; exit 1; }}\n"
        f"echo {q(f'rclone remote {name} configured')}\n"
    )


def _failing_step(id_: str, title: str, problems: list[str]) -> Step:
    msg = "; ".join(problems)
    return Step(id=id_, title=title, run=f"echo {q('gpuwizard: ' + msg)} >&2\nexit 2\n", phase="data")


def _slug(text: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s[:40].strip("-") or "data"

RCLONE_FLAGS = "--use-json-log --stats 1s --stats-log-level NOTICE -v"
# --check-first: list and compare everything before transferring, so totalBytes is known
# when the first byte moves and the progress fraction only grows.
COPY_FLAGS = RCLONE_FLAGS + " --check-first"

# gw_extract returns 100 for "not an archive: copy it as it is", a status no extractor
# uses (unzip's 3 means a damaged zip, which must fail the step, never be copied as done);
# unzip's 1 means warnings only, and the files are there.
# The destination may lie outside the login user's home (/data, /mnt/disks/...): make it
# with sudo -n for the login user when plain mkdir may not, so the copy runs unprivileged.
MAKE_DEST = r"""if ! mkdir -p "$gw_dest/.gpuwizard" 2>/dev/null; then
  if sudo -n install -d -o "$(id -u)" -g "$(id -g)" -- "$gw_dest" 2>/dev/null; then
    mkdir -p "$gw_dest/.gpuwizard"
  else
    echo "gpuwizard: cannot create $gw_dest as $(id -un), and sudo -n is not allowed: choose a folder under ~ or create it for $(id -un) first" >&2
    exit 1
  fi
fi
mkdir -p "$gw_stage"
"""

_EXTRACT = r"""gw_extract() {
  mkdir -p "$2"
  case "$1" in
    *.zip|*.ZIP)
      if command -v unzip >/dev/null 2>&1; then
        unzip -q -o "$1" -d "$2" || [ $? -eq 1 ]
      else
        python3 -m zipfile -e "$1" "$2"
      fi ;;
    *.tar|*.tar.gz|*.tgz|*.tar.bz2|*.tbz2|*.tbz|*.tar.xz|*.txz|*.tar.zst) tar -xf "$1" -C "$2" ;;
    *) return 100 ;;
  esac
}
"""


def dataset_key(ds: Dataset) -> str:
    """The dataset's marker name under ``<to>/.gpuwizard/``: ``KEY.done`` says it is complete
    (on the head after the download, on a cluster's workers after the verified copy)."""
    return hashlib.sha256(json.dumps([ds.from_, ds.to, ds.remote, ds.unzip]).encode()).hexdigest()[:12]


def done_check(ds: Dataset) -> str:
    """The dataset step's "already done" check: its marker exists."""
    return f'gw_dest={qpath(ds.to)}\ngw_dest="${{gw_dest%/}}"\ntest -f "$gw_dest/.gpuwizard/{dataset_key(ds)}.done"\n'


def dataset_step(index: int, ds: Dataset, recipe: Recipe, step_id: str) -> Step:
    """One dataset: copy (resumable) -> verify -> extract -> done marker."""
    remotes = recipe.rclone.remotes if recipe.rclone else {}
    src = ds.from_
    ups: tuple[Upload, ...] = ()
    prelude = ""
    verify_src: str | None = None  # the rclone source `rclone check` compares against
    bad = dataset_source_problem(src)
    if bad:
        return _failing_step(step_id, f"dataset {src}", [f"datasets[{index}].from: {bad}"])
    if is_drive_link(src):
        link = parse_drive_link(src)
        rname = ds.remote or ""
        if rname not in remotes:
            return _failing_step(step_id, f"dataset {src}", [f"datasets[{index}].remote: name a drive remote for this link"])
        copy = _drive_link_copy(rname, link)
        if link.kind == "folder":
            verify_src = link.connection_string(rname)
        title = f"{link.kind} {link.id[:12]}… via {rname}"
    elif src.startswith(("http://", "https://")):
        base, _, fname = src.rpartition("/")
        rname = ""
        spec = f":http:{fname}"
        copy = f"rclone copy --http-url {q(base + '/')} {q(spec)} \"$gw_stage\" {COPY_FLAGS}"
        verify_src = None
        title = fname
    else:
        rname = src.split(":", 1)[0]
        copy = f"rclone copy {q(src)} \"$gw_stage\" {COPY_FLAGS}"
        verify_src = src
        title = src
    if rname and rname in remotes:
        _plain, secrets, problems = split_options(rname, remotes[rname])
        if problems:
            return _failing_step(step_id, f"dataset {title}", problems)
        prelude = secret_prelude(rname, secrets)
        ups = uploads(secrets)
    key = dataset_key(ds)
    stage_line = f'gw_stage="$gw_dest/.gpuwizard/stage-{key}"' if ds.unzip else 'gw_stage="$gw_dest"'
    run = [prelude.rstrip("\n"),
           f"gw_dest={qpath(ds.to)}",
           'gw_dest="${gw_dest%/}"; gw_dest="${gw_dest:-/}"',
           stage_line,
           MAKE_DEST,
           f'gw_log="$gw_dest/.gpuwizard/{key}.log"',
           "gw_rc=0",
           f'{copy} 2>&1 | tee "$gw_log" || gw_rc=$?']
    if is_drive_link(src) and parse_drive_link(src).kind == "unknown":
        link = parse_drive_link(src)
        run.append(f"""if [ "$gw_rc" -ne 0 ] && grep -q "can't copy directory" "$gw_log"; then
  echo "gpuwizard: the link is a folder; copying the folder"
  gw_rc=0
  rclone copy {q(link.connection_string(rname))} "$gw_stage" {COPY_FLAGS} 2>&1 | tee "$gw_log" || gw_rc=$?
  gw_folder=1
fi""")
    run.append('if [ "$gw_rc" -ne 0 ]; then\n' + _indent(hint_shell('"$gw_log"'))
               + '  echo "gpuwizard: rclone exited with $gw_rc; re-run the step to resume (finished files are skipped)" >&2\n'
               + '  exit "$gw_rc"\nfi')
    if ds.checksum and verify_src is not None:
        run.append(f'echo "gpuwizard: verifying sizes and hashes against the source"\n'
                   f'rclone check {q(verify_src)} "$gw_stage" --one-way 2>&1 | tail -n 5')
    if ds.unzip:
        run.append(_EXTRACT + r"""gw_n=0
while IFS= read -r -d '' gw_f; do
  gw_rel=${gw_f#"$gw_stage"/}
  gw_dir=$(dirname -- "$gw_rel")
  if gw_extract "$gw_f" "$gw_dest/$gw_dir"; then
    echo "gpuwizard: extracted $gw_rel"; gw_n=$((gw_n + 1))
  elif [ $? -eq 100 ]; then
    mkdir -p "$gw_dest/$gw_dir"; ln -f -- "$gw_f" "$gw_dest/$gw_rel" 2>/dev/null || cp -f -- "$gw_f" "$gw_dest/$gw_rel"
  else
    echo "gpuwizard: could not extract $gw_rel (damaged or unsupported archive)" >&2; exit 1
  fi
done < <(find "$gw_stage" -type f ! -name '*.partial' -print0)
echo "gpuwizard: $gw_n archive(s) extracted into $gw_dest"
# everything is in place: the staged download would only double the disk the dataset takes
rm -rf -- "$gw_stage" """)
    run.append(f'printf "%s\\n" {q(src)} > "$gw_dest/.gpuwizard/{key}.done"\necho "gpuwizard: dataset ready in $gw_dest"')
    check = done_check(ds)
    return Step(id=step_id, title=f"dataset {title} -> {ds.to}", run="\n".join(x for x in run if x) + "\n",
                check=check, uploads=ups, progress="rclone", timeout=6 * 3600, retries=1, phase="data")


def _indent(text: str) -> str:
    return "".join("  " + line + "\n" for line in text.splitlines())


def _drive_link_copy(remote: str, link: DriveLink) -> str:
    if link.kind == "folder":
        return f"rclone copy {q(link.connection_string(remote))} \"$gw_stage\" {COPY_FLAGS}"
    rk = f" --drive-resource-key {q(link.resource_key)}" if link.resource_key else ""
    # copyid: "the path should end with a / to copy the file as named into this directory"
    return f"rclone backend copyid {q(remote + ':')} {q(link.id)} \"$gw_stage/\"{rk} {RCLONE_FLAGS}"


def dataset_ids(recipe: Recipe) -> list[str]:
    """Stable, unique step ids: dataset.<slug of the source's last part>."""
    ids: list[str] = []
    for ds in recipe.datasets:
        src = ds.from_
        if is_drive_link(src):
            try:
                base = parse_drive_link(src).id[:12]
            except ShareLinkError:
                base = "link"
        else:
            base = src.split(":", 1)[-1].rstrip("/").rsplit("/", 1)[-1] or src.split(":", 1)[0]
        sid = f"dataset.{_slug(base)}"
        n = 2
        while sid in ids:
            sid = f"dataset.{_slug(base)}-{n}"
            n += 1
        ids.append(sid)
    return ids


def steps(recipe: Recipe) -> list[Step]:
    """rclone.install, one rclone.remote.NAME per remote, one dataset.<slug> per dataset."""
    remotes = recipe.rclone.remotes if recipe.rclone else {}
    if not remotes and not recipe.datasets:
        return []
    out = [install_step(recipe)]
    out += [remote_step(name, rem) for name, rem in remotes.items()]
    out += [dataset_step(i, ds, recipe, sid) for i, (ds, sid) in enumerate(zip(recipe.datasets, dataset_ids(recipe)))]
    return out
