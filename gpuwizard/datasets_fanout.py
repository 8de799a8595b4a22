"""Datasets in a cluster: downloaded once, on the head, then copied to the workers over the
private network with rsync over SSH.

Why: N nodes downloading the same Google Drive file is N downloads against Drive's per-file
quota, and the quota fails them (issue 16); the network between the nodes is also far
faster than Drive. So the head (rank 0) runs the ordinary dataset steps
(:mod:`gpuwizard.rclone.host_steps`: download, ``rclone check``, extract, marker), and
every worker pulls the finished folders from it, in parallel, then checks every file's
sha256 against the head's list. rclone and its remotes (and so the Drive token) live on the
head only.

The key: gpuwizard makes an ed25519 pair for this alone, once per run, in the run
directory (:func:`bind`, called by the runner once the hosts are known). The private key
travels to the workers as a secret upload (0600, masked in logs); the public key goes into
the head's ``authorized_keys`` as ``restrict,from="<GPUWIZARD_NODE_IPS>"``: no forwarding,
no pty, and only from the cluster's own addresses. The workers verify the head's host key
against what gpuwizard itself verified (the known_hosts entry gpuwizard used for the head,
re-labelled with its private address), never ``StrictHostKeyChecking=no``.

The steps, in plan order (``on`` says which nodes run each; ``B`` marks a barrier: every
node reaches it before any starts it):

* all: ``dataset.fanout.rsync`` (rsync and ssh present, apt-get if not)
* head: ``rclone.*`` and ``dataset.<slug>`` (the downloads)
* workers: ``dataset.fanout.key`` (the key and the head's pinned host key; meanwhile the
  head downloads)
* head: ``dataset.fanout.prepare`` (a sha256 list per destination folder; the key
  authorized)
* all, B: ``dataset.fanout``: the head is ready; each worker checks it can log in
* workers: ``dataset.fanout.pull[-N]``, one per destination folder: rsync, ``sha256sum -c``
  against the head's list, then the same ``.done`` markers the head has (so the datasets'
  own check says done on every node)
* all, B: ``dataset.fanout.close``: every worker has its copy; the head removes the key
  from ``authorized_keys``, the workers delete theirs.

Until ``close`` runs (a worker failed; the run is resumed) the key stays authorized,
restricted as above. A replaced worker (a new host, nothing done) makes the barriers run
again on every node, ``prepare`` with them, so the head authorizes the key again
(:func:`gpuwizard.cluster.plan.collective_done`); finished downloads and copies are skipped
by their checks. Should a worker still fail to log in, it says so, and
``gpuwizard run RECIPE --fresh`` starts over the same way.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

from gpuwizard import rclone, ssh
from gpuwizard.cluster import env as cluster_env
from gpuwizard.privatefile import write_atomic
from gpuwizard.rclone.host_steps import MAKE_DEST, dataset_key, done_check
from gpuwizard.recipe import Dataset, Recipe
from gpuwizard.shell import q, qpath
from gpuwizard.ssh import HostSpec
from gpuwizard.steps import Step, Upload

REMOTE_DIR = "~/.gpuwizard/cluster"
REMOTE_KEY = f"{REMOTE_DIR}/fanout_ed25519"
REMOTE_PUB = f"{REMOTE_DIR}/fanout_ed25519.pub"
REMOTE_PIN = f"{REMOTE_DIR}/head_known_hosts"
MANIFEST = "fanout.sha256"  # under <to>/.gpuwizard/ on the head: every file's sha256 there
BARRIER = "dataset.fanout"
CLOSE = "dataset.fanout.close"
#: Where the plan's uploads point until the run binds them to its run directory (:func:`bind`).
PLACEHOLDER = "<run dir>/cluster"
RANK = cluster_env.NODE_RANK
IPS = cluster_env.NODE_IPS
MASTER = cluster_env.MASTER_ADDR


@dataclass(frozen=True)
class FanoutFiles:
    """The local files the fan-out uploads: the run's key pair and the head's pinned host key."""

    private: str
    public: str
    pin: str

    @classmethod
    def under(cls, d: str) -> "FanoutFiles":
        return cls(private=f"{d}/fanout_ed25519", public=f"{d}/fanout_ed25519.pub", pin=f"{d}/head_known_hosts")


PLAN_FILES = FanoutFiles.under(PLACEHOLDER)


def node_address(spec: HostSpec) -> str:
    """Where the other nodes reach ``spec``: its private address, else its address."""
    return spec.private_address or spec.address


def pin_host(address: str, port: int | None) -> str:
    """The known_hosts name of ``address:port`` (``host`` or ``[host]:port``)."""
    port = port or 22
    return address if port == 22 else f"[{address}]:{port}"


def prepare_files(run_dir: str, run_id: str, head: HostSpec) -> FanoutFiles:
    """Make (once per run) the key pair under ``run_dir/cluster/``, 0600, and write the head's
    host key as the workers will see it: the keys gpuwizard trusts for the head, named by
    the head's private address. An empty pin (a first contact with --accept-new-host-key)
    makes the workers' step fail with what to do."""
    d = os.path.join(run_dir, "cluster")
    os.makedirs(d, mode=0o700, exist_ok=True)
    files = FanoutFiles.under(d)
    if not (os.path.isfile(files.private) and os.path.isfile(files.public)):
        # whole or not at all (a cut-off key would pass the check above and be reused);
        # the public key last, as the sign that the pair is complete
        private, public = ssh.new_keypair(f"gpuwizard-fanout-{run_id}")
        write_atomic(files.private, private.decode())
        write_atomic(files.public, public.decode(), mode=0o644)
    name = pin_host(node_address(head), head.port)
    write_atomic(files.pin, "".join(f"{name} {key}\n" for key in ssh.trusted_keys(head)), mode=0o644)
    return files


def bind(per_host: Mapping[str, Sequence[Step]], run_dir: str, run_id: str,
         hosts: Sequence[HostSpec]) -> dict[str, list[Step]]:
    """The per-node lists with the fan-out's uploads pointing at this run's files (made
    here, once per run); lists without a fan-out come back unchanged."""
    out = {h: list(steps) for h, steps in per_host.items()}
    if not any(u.local.startswith(PLACEHOLDER) for steps in out.values() for s in steps for u in s.uploads):
        return out
    real = prepare_files(run_dir, run_id, hosts[0])
    swap = {PLAN_FILES.private: real.private, PLAN_FILES.public: real.public, PLAN_FILES.pin: real.pin}
    for h, steps in out.items():
        out[h] = [replace(s, uploads=tuple(replace(u, local=swap.get(u.local, u.local)) for u in s.uploads))
                  if s.uploads else s for s in steps]
    return out


@dataclass(frozen=True)
class Folder:
    """One destination folder the workers copy, and the datasets that fill it."""

    to: str
    datasets: tuple[Dataset, ...]


def folders(recipe: Recipe) -> list[Folder]:
    """The recipe's destination folders in first-use order (two datasets may share one)."""
    out: dict[str, list[Dataset]] = {}
    for ds in recipe.datasets:
        out.setdefault(_norm(ds.to), []).append(ds)
    return [Folder(to, tuple(dss)) for to, dss in out.items()]


def _norm(path: str) -> str:
    p = re.sub(r"/+", "/", path)
    return p.rstrip("/") or p


def _remote_path(to: str) -> str:
    """``to`` as the head's sshd sees it: relative to the login's home (where ``~`` points),
    or absolute. rsync runs with --protect-args, so no remote shell reads it."""
    if to == "~":
        return "."
    if to.startswith("~/"):
        return to[2:] or "."
    return to


@dataclass(frozen=True)
class HeadLogin:
    """How a worker logs in to the head: the user (None: the worker's own login user, as
    on GCP, where every VM has the same one) and the SSH port."""

    user: str | None
    port: int


def head_login(recipe: Recipe) -> HeadLogin:
    """The head's SSH user and port: the first listed host's, or the recipe's ``ssh``."""
    if recipe.target.ssh is not None and recipe.target.ssh.hosts:
        spec = ssh.hosts_from_recipe(recipe)[0]
        return HeadLogin(spec.user, spec.port or 22)
    return HeadLogin(None, recipe.ssh.port or 22)


def wanted(recipe: Recipe) -> bool:
    """A cluster recipe with datasets: they are fanned out from the head."""
    return recipe.cluster is not None and bool(recipe.datasets)


def steps(recipe: Recipe, files: FanoutFiles = PLAN_FILES) -> list[Step]:
    """The data steps of a recipe: :func:`gpuwizard.rclone.steps` when it is not a cluster
    with datasets; else the head's downloads and the workers' copies (see the module)."""
    plain = rclone.steps(recipe)
    if not wanted(recipe):
        return plain
    login = head_login(recipe)
    return [rsync_step(), *(replace(s, on="head") for s in plain), key_step(files),
            prepare_step(recipe, files), barrier_step(login), *pull_steps(recipe, login), close_step(files)]


def rsync_step() -> Step:
    """rsync and the ssh client on every node (rsync runs at both ends of the copy)."""
    check = "command -v rsync >/dev/null 2>&1 && command -v ssh >/dev/null 2>&1\n"
    run = ("gw_sudo=\"\"\n[ \"$(id -u)\" = 0 ] || gw_sudo=\"sudo -n\"\n"
           "$gw_sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq\n"
           "$gw_sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rsync openssh-client\n"
           "rsync --version | awk 'NR == 1'\n")
    return Step(id="dataset.fanout.rsync", title="rsync for copying datasets between nodes", run=run, check=check,
                timeout=600, retries=2, phase="data")


def key_step(files: FanoutFiles) -> Step:
    """On the workers: the run's key (0600) and the head's host key as gpuwizard verified it."""
    msg = ("gpuwizard: no host key of the head was known when this run started (first contact with "
           "--accept-new-host-key?); run again with --resume: the key is pinned now")
    run = (f"gw_pin={qpath(REMOTE_PIN)}\n"
           f'[ -s "$gw_pin" ] || {{ echo {q(msg)} >&2; exit 1; }}\n'
           'echo "gpuwizard: the cluster key and the head\'s host key are in place"\n')
    ups = (Upload(local=files.private, remote=REMOTE_KEY, mode=0o600, secret=True),
           Upload(local=files.pin, remote=REMOTE_PIN, mode=0o644, secret=False))
    return Step(id="dataset.fanout.key", title="The key for copying from the head", run=run, uploads=ups,
                on="workers", timeout=120, phase="data")


def _key_body() -> str:
    """Bash setting ``gw_pub`` and ``gw_body`` (the key's base64) from the uploaded public key."""
    return (f"gw_pub={qpath(REMOTE_PUB)}\n"
            'gw_body=$(awk \'{print $2}\' "$gw_pub")\n'
            '[ -n "$gw_body" ] || { echo "gpuwizard: the cluster key $gw_pub is empty" >&2; exit 1; }\n')


# The authorized_keys line: restricted, and only from the cluster's addresses (checked to be
# addresses, so nothing else can reach the line's options).
_LINE = (f'gw_from=${{{IPS}:?this step runs on a cluster node}}\n'
         'case "$gw_from" in *[!0-9A-Za-z.:,-]*) echo "gpuwizard: unexpected node addresses: $gw_from" >&2; exit 1 ;; '
         'esac\n'
         # sshd matches from= against addresses only (UseDNS no, its default): names bring theirs
         "gw_names=$(printf '%s\\n' \"$gw_from\" | tr , '\\n' | grep -v : | grep '[A-Za-z]' || true)\n"
         'if [ -n "$gw_names" ]; then\n'
         "  gw_from=\"$gw_from,$(printf '%s\\n' \"$gw_names\" | xargs -r -n1 getent ahosts -- | awk '{print $1}' "
         '| paste -sd , -)"\n'
         'fi\n'
         "gw_from=$(printf '%s\\n' \"$gw_from\" | tr , '\\n' | awk 'NF && !seen[$0]++' | paste -sd , -)\n"
         'gw_line="restrict,from=\\"$gw_from\\" $(cat "$gw_pub")"\n')

_DROP_KEY = ('gw_tmp=$(mktemp "$HOME/.ssh/authorized_keys.XXXXXX")\n'
             'grep -vF -- "$gw_body" "$HOME/.ssh/authorized_keys" > "$gw_tmp" || true\n')


def prepare_step(recipe: Recipe, files: FanoutFiles) -> Step:
    """On the head: every destination folder's sha256 list (what the workers check their copy
    against), then the key in ``authorized_keys``, restricted to the nodes' addresses."""
    lists = []
    fresh = []
    for f in folders(recipe):
        dest = f"gw_dest={qpath(f.to)}\n" 'gw_dest="${gw_dest%/}"; gw_dest="${gw_dest:-/}"\n'
        lists.append(dest + 'echo "gpuwizard: listing the sha256 of every file in $gw_dest"\n'
                     '(cd "$gw_dest" && find . -path ./.gpuwizard -prune -o -type f -print0 | LC_ALL=C sort -z '
                     f'| xargs -0 -r sha256sum) > "$gw_dest/.gpuwizard/{MANIFEST}.new"\n'
                     f'mv -f "$gw_dest/.gpuwizard/{MANIFEST}.new" "$gw_dest/.gpuwizard/{MANIFEST}"\n')
        # the list is newer than every dataset's marker (a dataset downloaded again) and than
        # every file (one changed since): else list again
        listed = f'"$gw_dest/.gpuwizard/{MANIFEST}"'
        fresh.append(dest + "".join(f'[ {listed} -nt "$gw_dest/.gpuwizard/{dataset_key(ds)}.done" ]\n'
                                    for ds in f.datasets)
                     + f'if [ -n "$(find "$gw_dest" -path "$gw_dest/.gpuwizard" -prune -o -type f -newer {listed} '
                     '-print -quit)" ]; then exit 1; fi\n')
    auth = (_key_body() + _LINE
            + 'umask 077\nmkdir -p "$HOME/.ssh"\ntouch "$HOME/.ssh/authorized_keys"\n'
            + "# this key's earlier line (other addresses) goes; every other line stays as it was\n"
            + _DROP_KEY
            + 'printf \'%s\\n\' "$gw_line" >> "$gw_tmp"\n'
            + 'chmod 600 "$gw_tmp"\nmv -f "$gw_tmp" "$HOME/.ssh/authorized_keys"\n'
            + 'echo "gpuwizard: the cluster key may copy from this node, from $gw_from only"\n')
    check = (_key_body() + _LINE + 'grep -qxF -- "$gw_line" "$HOME/.ssh/authorized_keys"\n' + "".join(fresh))
    return Step(id="dataset.fanout.prepare", title="Serve the datasets to the workers: sha256 lists, the key",
                run="".join(lists) + auth, check=check, on="head",
                uploads=(Upload(local=files.public, remote=REMOTE_PUB, mode=0o644, secret=False),),
                timeout=6 * 3600, phase="data")


def _ssh_command(login: HeadLogin, array: bool = False) -> str:
    """Bash setting ``gw_ssh``, the ssh command line rsync's ``-e`` takes (rsync splits it,
    honouring single quotes), or with ``array`` the same as the array ``gw_ssh_argv``: the
    run's key and the pinned host key only (no agent, no other identity, no prompt)."""
    opts = ("-o IdentitiesOnly=yes -o IdentityAgent=none -o GlobalKnownHostsFile=/dev/null "
            "-o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=30 -o ServerAliveInterval=15")
    out = f"gw_key={qpath(REMOTE_KEY)}\ngw_pin={qpath(REMOTE_PIN)}\n"
    if array:
        return out + f'gw_ssh_argv=(ssh -p {login.port} -i "$gw_key" -o UserKnownHostsFile="$gw_pin" {opts})\n'
    return out + f'gw_ssh="ssh -p {login.port} -i \'$gw_key\' -o UserKnownHostsFile=\'$gw_pin\' {opts}"\n'


def _login(login: HeadLogin, for_ssh: bool = False) -> str:
    """Bash setting ``gw_at``: ``user@address`` of the head (its private address, from
    GPUWIZARD_MASTER_ADDR; the worker's own login user when the recipe names none), an
    IPv6 address in brackets as rsync wants it; with ``for_ssh`` also ``gw_ssh_at``, the
    same for ssh itself, which takes brackets as part of the name."""
    user = q(login.user) if login.user else '"$(id -un)"'
    return (f'gw_addr=${{{MASTER}:?this step runs on a cluster node}}\n'
            + (f'gw_ssh_at={user}@"$gw_addr"\n' if for_ssh else "")
            + 'case "$gw_addr" in *:*) gw_addr="[$gw_addr]" ;; esac\n'
            f'gw_at={user}@"$gw_addr"\n')


def barrier_step(login: HeadLogin) -> Step:
    """``dataset.fanout``, a barrier: the head has every dataset and has authorized the key;
    each worker tries a login with it, so a refusal is said here, once, plainly."""
    worker = (_ssh_command(login, array=True) + _login(login, for_ssh=True)
              + 'if ! gw_err=$("${gw_ssh_argv[@]}" "$gw_ssh_at" true 2>&1 </dev/null); then\n'
              + '  echo "gpuwizard: cannot log in to the head ($gw_at) with the cluster key: $gw_err" >&2\n'
              + '  echo "gpuwizard: the head authorizes the key in dataset.fanout.prepare; if an earlier attempt of '
              + 'this run finished, run again with --fresh (finished steps are skipped by their checks)" >&2\n'
              + "  exit 1\nfi\n"
              + 'echo "gpuwizard: this node logs in to the head ($gw_at) with the cluster key"\n')
    run = (f'if [ "${{{RANK}:?this step runs on a cluster node}}" = 0 ]; then\n'
           '  echo "gpuwizard: datasets ready on this node (the head); the workers copy them now"\n'
           "else\n" + "".join("  " + line + "\n" for line in worker.splitlines()) + "fi\n")
    return Step(id=BARRIER, title="Datasets ready on the head; the workers copy them", run=run, barrier=True,
                timeout=300, retries=1, phase="data")


def pull_steps(recipe: Recipe, login: HeadLogin) -> list[Step]:
    """One copy per destination folder: rsync from the head, every file's sha256 against the
    head's list, then the datasets' markers (so the same check says done on every node)."""
    out: list[Step] = []
    for i, f in enumerate(folders(recipe)):
        sid = "dataset.fanout.pull" if i == 0 else f"dataset.fanout.pull-{i + 1}"
        src = _remote_path(f.to).rstrip("/") + "/"
        marks = "".join(f'printf "%s\\n" {q(ds.from_)} > "$gw_dest/.gpuwizard/{dataset_key(ds)}.done"\n'
                        for ds in f.datasets)
        run = (f"gw_dest={qpath(f.to)}\n"
               'gw_dest="${gw_dest%/}"; gw_dest="${gw_dest:-/}"\n'
               'gw_stage="$gw_dest"\n'
               + MAKE_DEST + _ssh_command(login) + _login(login)
               + f"gw_src={q(src)}\n"
               + 'echo "gpuwizard: copying $gw_src from the head ($gw_at) into $gw_dest"\n'
               # -s: the path travels inside rsync's protocol, no remote shell splits it
               + 'rsync -a -s --partial --human-readable --info=stats1 --exclude=/.gpuwizard/ -e "$gw_ssh" '
               + '"$gw_at:$gw_src" "$gw_dest/"\n'
               + f'rsync -a -s -e "$gw_ssh" "$gw_at:$gw_src.gpuwizard/{MANIFEST}" "$gw_dest/.gpuwizard/{MANIFEST}"\n'
               + 'echo "gpuwizard: checking the sha256 of every file against the head\'s list"\n'
               + f'if ! (cd "$gw_dest" && sha256sum -c --quiet --strict ".gpuwizard/{MANIFEST}"); then\n'
               + '  echo "gpuwizard: the copy in $gw_dest differs from the head\'s files (above); '
               + 're-run the step to copy again" >&2\n  exit 1\nfi\n'
               + marks
               + f'echo "gpuwizard: {len(f.datasets)} dataset(s) ready in $gw_dest (copied from the head)"\n')
        check = "".join(done_check(ds) for ds in f.datasets)
        out.append(Step(id=sid, title=f"copy {f.to} from the head", run=run, check=check, on="workers",
                        timeout=6 * 3600, retries=1, phase="data"))
    return out


def close_step(files: FanoutFiles) -> Step:
    """``dataset.fanout.close``, a barrier (every worker has its copy): the head removes the
    key from ``authorized_keys``, the workers delete theirs."""
    head = (_key_body()
            + 'if [ -f "$HOME/.ssh/authorized_keys" ]; then\n'
            + "".join("  " + line + "\n" for line in _DROP_KEY.splitlines())
            + '  chmod 600 "$gw_tmp"\n  mv -f "$gw_tmp" "$HOME/.ssh/authorized_keys"\nfi\n'
            + 'echo "gpuwizard: every worker has the datasets; the cluster key is no longer authorized here"\n')
    run = (f'if [ "${{{RANK}:?this step runs on a cluster node}}" = 0 ]; then\n'
           + "".join("  " + line + "\n" for line in head.splitlines())
           + "else\n"
           + f"  rm -f -- {qpath(REMOTE_KEY)} {qpath(REMOTE_PIN)} {qpath(REMOTE_PUB)}\n"
           + '  echo "gpuwizard: the cluster key is deleted from this node"\nfi\n')
    return Step(id=CLOSE, title="Datasets on every node; the cluster key withdrawn", run=run,
                uploads=(Upload(local=files.public, remote=REMOTE_PUB, mode=0o644, secret=False),),
                barrier=True, timeout=120, phase="data")
