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
directory (:func:`prepare_files`). The private key travels to the workers as a secret
upload (0600, masked in logs); the public key goes into the head's ``authorized_keys`` as
``restrict,from="<worker addresses>"``: no shell features (no forwarding, no pty) and only
from the cluster's own addresses. The workers verify the head's host key against what
gpuwizard itself verified (the known_hosts gpuwizard used, re-labelled with the head's
private address), never ``StrictHostKeyChecking=no``.

Per node, in order (``B`` marks a barrier: every node reaches it before any starts it):

* every node: ``dataset.fanout.rsync`` (rsync and ssh present, apt-get if not)
* head: ``rclone.*``, ``dataset.<slug>`` (the downloads), ``dataset.fanout.prepare``
  (a sha256 list per destination folder, the key authorized)
* B ``dataset.fanout``: the head is ready; each worker installs the key and the pin and
  checks it can log in
* workers: ``dataset.fanout.pull[-N]``, one per destination folder: rsync, then
  ``sha256sum -c`` against the head's list, then the same ``.done`` markers the head has
* B ``dataset.fanout.close``: the head removes the key from ``authorized_keys``; the
  workers delete their copy. Until then (a worker failed and the run is resumed) the key
  stays authorized, restricted as above. The head's steps name the workers, so a run
  whose workers changed (a replaced node) authorizes the key again; after a finished run,
  ``gpuwizard run RECIPE --fresh`` does too (finished downloads and copies are skipped by
  their checks).

Pure step builders, like the rest of the planner, plus :func:`prepare_files` (the run's
key files), which the runner calls once the hosts are known.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Sequence

from gpuwizard import rclone, ssh
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


@dataclass(frozen=True)
class FanoutFiles:
    """The local files the fan-out uploads: the run's key pair and the head's pinned host key."""

    private: str
    public: str
    pin: str

    @classmethod
    def placeholder(cls) -> "FanoutFiles":
        """Labels for ``gpuwizard plan``: the files exist only once a run starts."""
        d = "<run dir>/cluster"
        return cls(private=f"{d}/fanout_ed25519", public=f"{d}/fanout_ed25519.pub", pin=f"{d}/head_known_hosts")


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
    files = FanoutFiles(private=os.path.join(d, "fanout_ed25519"), public=os.path.join(d, "fanout_ed25519.pub"),
                        pin=os.path.join(d, "head_known_hosts"))
    if not (os.path.isfile(files.private) and os.path.isfile(files.public)):
        private, public = ssh.new_keypair(f"gpuwizard-fanout-{run_id}")
        fd = os.open(files.private, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(private)
        with open(files.public, "wb") as fh:
            fh.write(public)
    name = pin_host(node_address(head), head.port)
    lines = [f"{name} {key}\n" for key in ssh.trusted_keys(head)]
    with open(files.pin, "w", encoding="utf-8") as fh:
        fh.writelines(lines)
    return files


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


def steps_by_rank(recipe: Recipe, nodes: Sequence[HostSpec], files: FanoutFiles) -> list[list[Step]]:
    """The data steps of each node, rank order: the head's downloads and the workers' copies.

    With one node, or no datasets, every node gets the ordinary rclone steps (nothing to fan
    out)."""
    plain = rclone.steps(recipe)
    if len(nodes) < 2 or not recipe.datasets:
        return [list(plain) for _ in nodes]
    head, workers = nodes[0], list(nodes[1:])
    who = _workers_note(workers)
    head_steps = [rsync_step(), *plain, prepare_step(recipe, workers, files, who),
                  barrier_step(head_side=True, head=head, files=files, who=who),
                  close_step(head_side=True, files=files, who=who)]
    worker_steps = [rsync_step(), barrier_step(head_side=False, head=head, files=files, who=who),
                    *pull_steps(recipe, head), close_step(head_side=False, files=files, who=who)]
    return [head_steps] + [list(worker_steps) for _ in workers]


def _workers_note(workers: Sequence[HostSpec]) -> str:
    """A comment naming the workers: a replaced node changes the head's steps, so they
    run again on resume (the key is authorized anew for the new address)."""
    return "# gpuwizard: workers " + ", ".join(f"{w.name}={node_address(w)}" for w in workers) + "\n"


def rsync_step() -> Step:
    """rsync and the ssh client on every node (rsync runs at both ends of the copy)."""
    check = "command -v rsync >/dev/null 2>&1 && command -v ssh >/dev/null 2>&1\n"
    run = ("gw_sudo=\"\"\n[ \"$(id -u)\" = 0 ] || gw_sudo=\"sudo -n\"\n"
           "$gw_sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq\n"
           "$gw_sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rsync openssh-client\n"
           "rsync --version | awk 'NR == 1'\n")
    return Step(id="dataset.fanout.rsync", title="rsync for copying datasets between nodes", run=run, check=check,
                timeout=600, retries=2, phase="data")


def _authorized_line() -> str:
    """Bash setting ``gw_body`` (the key's base64) from the uploaded public key."""
    return (f"gw_pub={qpath(REMOTE_PUB)}\n"
            'gw_body=$(awk \'{print $2}\' "$gw_pub")\n'
            '[ -n "$gw_body" ] || { echo "gpuwizard: the cluster key $gw_pub is empty" >&2; exit 1; }\n')


def prepare_step(recipe: Recipe, workers: Sequence[HostSpec], files: FanoutFiles, who: str) -> Step:
    """On the head: every destination folder's sha256 list (what the workers check their copy
    against), then the key in ``authorized_keys``, restricted to the workers' addresses."""
    addrs = ",".join(dict.fromkeys(node_address(w) for w in workers))
    opts = f'restrict,from="{addrs}"'
    lists = []
    fresh = []
    for f in folders(recipe):
        lists.append(f"gw_dest={qpath(f.to)}\n"
                     f'gw_dest="${{gw_dest%/}}"; gw_dest="${{gw_dest:-/}}"\n'
                     'echo "gpuwizard: listing the sha256 of every file in $gw_dest"\n'
                     '(cd "$gw_dest" && find . -path ./.gpuwizard -prune -o -type f -print0 | LC_ALL=C sort -z '
                     f'| xargs -0 -r sha256sum) > "$gw_dest/.gpuwizard/{MANIFEST}.new"\n'
                     f'mv -f "$gw_dest/.gpuwizard/{MANIFEST}.new" "$gw_dest/.gpuwizard/{MANIFEST}"\n')
        marks = " ".join(f'"$gw_dest/.gpuwizard/{dataset_key(ds)}.done"' for ds in f.datasets)
        fresh.append(f"gw_dest={qpath(f.to)}\n"
                     f'gw_dest="${{gw_dest%/}}"; gw_dest="${{gw_dest:-/}}"\n'
                     f'for gw_m in {marks}; do [ "$gw_dest/.gpuwizard/{MANIFEST}" -nt "$gw_m" ]; done\n')
    auth = (_authorized_line()
            + f"gw_line={q(opts)}\" $(cat \"$gw_pub\")\"\n"
            + 'umask 077\nmkdir -p "$HOME/.ssh"\ntouch "$HOME/.ssh/authorized_keys"\n'
            # drop this key's earlier line (other workers), keep everything else as it was
            + 'gw_tmp=$(mktemp "$HOME/.ssh/authorized_keys.XXXXXX")\n'
            + 'grep -vF -- "$gw_body" "$HOME/.ssh/authorized_keys" > "$gw_tmp" || true\n'
            + 'printf \'%s\\n\' "$gw_line" >> "$gw_tmp"\n'
            + 'chmod 600 "$gw_tmp"\nmv -f "$gw_tmp" "$HOME/.ssh/authorized_keys"\n'
            + f'echo {q(f"gpuwizard: the cluster key may copy from this node, from {addrs} only")}\n')
    check = (_authorized_line() + f"gw_line={q(opts)}\" $(cat \"$gw_pub\")\"\n"
             + 'grep -qxF -- "$gw_line" "$HOME/.ssh/authorized_keys"\n' + "".join(fresh))
    return Step(id="dataset.fanout.prepare", title=f"Serve the datasets to {len(workers)} worker(s): sha256 lists, key",
                run=who + "".join(lists) + auth, check=who + check,
                uploads=(Upload(local=files.public, remote=REMOTE_PUB, mode=0o644, secret=False),),
                timeout=6 * 3600, phase="data")


def _ssh_command(head: HostSpec, array: bool = False) -> str:
    """Bash setting ``gw_ssh``, the ssh command line rsync's ``-e`` takes (rsync splits it,
    honouring single quotes), or with ``array`` the same as the array ``gw_ssh_argv``: the
    run's key and the pinned host key only (no agent, no other identity, no prompt)."""
    port = head.port or 22
    opts = ("-o IdentitiesOnly=yes -o IdentityAgent=none -o GlobalKnownHostsFile=/dev/null "
            "-o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=30 -o ServerAliveInterval=15")
    out = f'gw_key={qpath(REMOTE_KEY)}\ngw_pin={qpath(REMOTE_PIN)}\n'
    if array:
        return out + f'gw_ssh_argv=(ssh -p {port} -i "$gw_key" -o UserKnownHostsFile="$gw_pin" {opts})\n'
    return out + f'gw_ssh="ssh -p {port} -i \'$gw_key\' -o UserKnownHostsFile=\'$gw_pin\' {opts}"\n'


def _login(head: HostSpec) -> str:
    """Bash setting ``gw_at``: ``user@host`` of the head (the login user when unknown)."""
    addr = node_address(head)
    host = f"[{addr}]" if ":" in addr else addr
    user = q(head.user) if head.user else '"$(id -un)"'
    return f"gw_at={user}@{q(host)}\n"


def barrier_step(head_side: bool, head: HostSpec, files: FanoutFiles, who: str) -> Step:
    """``dataset.fanout``, a barrier: the head has every dataset and has authorized the key.
    On a worker it installs the key and the head's pinned host key and tries a login."""
    title = "Datasets ready on the head; workers copy them"
    if head_side:
        return Step(id=BARRIER, title=title, barrier=True, phase="data",
                    run=who + 'echo "gpuwizard: datasets ready on this node (the head); the workers copy them now"\n')
    msg_pin = ("gpuwizard: no host key of the head was known when this run started (first contact with "
               "--accept-new-host-key?); run again with --resume: the key is pinned now")
    run = (f"gw_pin={qpath(REMOTE_PIN)}\n"
           f'[ -s "$gw_pin" ] || {{ echo {q(msg_pin)} >&2; exit 1; }}\n'
           + _ssh_command(head, array=True) + _login(head)
           + 'if ! gw_err=$("${gw_ssh_argv[@]}" "$gw_at" true 2>&1 </dev/null); then\n'
           + '  echo "gpuwizard: cannot log in to the head ($gw_at) with the cluster key: $gw_err" >&2\n'
           + '  echo "gpuwizard: the head authorizes the key in dataset.fanout.prepare; if the run finished before, '
           + 'run again with --fresh (finished steps are skipped by their checks)" >&2\n'
           + "  exit 1\nfi\n"
           + 'echo "gpuwizard: this node logs in to the head ($gw_at) with the cluster key"\n')
    ups = (Upload(local=files.private, remote=REMOTE_KEY, mode=0o600, secret=True),
           Upload(local=files.pin, remote=REMOTE_PIN, mode=0o644, secret=False))
    return Step(id=BARRIER, title=title, run=run, uploads=ups, barrier=True, timeout=300, retries=1, phase="data")


def pull_steps(recipe: Recipe, head: HostSpec) -> list[Step]:
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
               + MAKE_DEST + _ssh_command(head) + _login(head)
               + f"gw_src={q(src)}\n"
               + 'echo "gpuwizard: copying $gw_src from the head ($gw_at) into $gw_dest"\n'
               # -s: the path travels inside rsync's protocol, no remote shell splits it
               + 'rsync -a -s --partial --human-readable --stats --exclude=/.gpuwizard/ -e "$gw_ssh" '
               + '"$gw_at:$gw_src" "$gw_dest/"\n'
               + f'rsync -a -s -e "$gw_ssh" "$gw_at:$gw_src.gpuwizard/{MANIFEST}" "$gw_dest/.gpuwizard/{MANIFEST}"\n'
               + 'echo "gpuwizard: checking the sha256 of every file against the head\'s list"\n'
               + f'if ! (cd "$gw_dest" && sha256sum -c --quiet --strict ".gpuwizard/{MANIFEST}"); then\n'
               + '  echo "gpuwizard: the copy in $gw_dest differs from the head\'s files (above); '
               + 're-run the step to copy again" >&2\n  exit 1\nfi\n'
               + marks
               + f'echo "gpuwizard: {len(f.datasets)} dataset(s) ready in $gw_dest (copied from the head)"\n')
        check = "".join(done_check(ds) for ds in f.datasets)
        out.append(Step(id=sid, title=f"copy {f.to} from the head", run=run, check=check, timeout=6 * 3600,
                        retries=1, phase="data"))
    return out


def close_step(head_side: bool, files: FanoutFiles, who: str) -> Step:
    """``dataset.fanout.close``, a barrier (every worker has its copy): the head removes the
    key from ``authorized_keys``, the workers delete theirs."""
    if head_side:
        run = (who + _authorized_line()
               + 'if [ -f "$HOME/.ssh/authorized_keys" ]; then\n'
               + '  gw_tmp=$(mktemp "$HOME/.ssh/authorized_keys.XXXXXX")\n'
               + '  grep -vF -- "$gw_body" "$HOME/.ssh/authorized_keys" > "$gw_tmp" || true\n'
               + '  chmod 600 "$gw_tmp"\n  mv -f "$gw_tmp" "$HOME/.ssh/authorized_keys"\nfi\n'
               + 'echo "gpuwizard: every worker has the datasets; the cluster key is no longer authorized here"\n')
        ups: tuple[Upload, ...] = (Upload(local=files.public, remote=REMOTE_PUB, mode=0o644, secret=False),)
    else:
        run = (f"rm -f -- {qpath(REMOTE_KEY)} {qpath(REMOTE_PIN)}\n"
               'echo "gpuwizard: the cluster key is deleted from this node"\n')
        ups = ()
    return Step(id=CLOSE, title="Datasets on every node; the cluster key withdrawn", run=run, uploads=ups,
                barrier=True, timeout=120, phase="data")

