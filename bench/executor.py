"""Executor benchmark: N hosts x 10 steps x 2000 lines each, against real sshd hosts.

Compares, on the same throwaway sshd hosts on 127.0.0.1:

* floor     one raw asyncssh connection per host running the same commands, output
            read and dropped (what any SSH executor must at least pay)
* gpuwizard the Executor with the run directory and the headless line renderer
            (output to /dev/null), in-process like the floor
* gpuwizard CLI  ``gpuwizard run recipe.yaml --headless`` as a process (adds Python
            start-up and imports)
* pyinfra / ansible-playbook  the same work, when installed in the bench venv
            (``--venv``, default /tmp/benchvenv); skipped with a note otherwise

Targets: gpuwizard <= 1.3x the floor at 8 hosts, <= 1.5x at 32 hosts.

    python bench/executor.py --hosts 8 32 --repeat 3

Every tool runs each command through the login user's shell, so a slow ~/.bashrc is
paid by all alike; the default login user is the fixture's ``gwtest`` with a stock one.
Prints a markdown table. Needs root (it starts sshd) and never touches the machine
beyond its own sshd processes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fixtures.sshd import SshdFactory  # noqa: E402

STEPS = 10
LINES = 2000


def step_script(i: int) -> str:
    return f"seq -f 'line %g of step {i}' 1 {LINES}"


async def floor(hosts) -> None:
    import asyncssh

    async def one(h) -> None:
        async with asyncssh.connect(h.address, port=h.port, username=h.user, client_keys=[h.client_key],
                                    known_hosts=h.known_hosts) as conn:
            for i in range(STEPS):
                # the same shell gpuwizard runs a step in, minus its process-group wrapper
                r = await conn.run(f"bash --norc --noprofile -euo pipefail -c {shlex.quote(step_script(i))}",
                                   check=True)
                assert r.stdout.count("\n") == LINES

    await asyncio.gather(*(one(h) for h in hosts))


async def gpuwizard_run(hosts, tmp: pathlib.Path) -> None:
    from gpuwizard.executor import ExecOptions, Executor
    from gpuwizard.headless import Fanout, LineRenderer
    from gpuwizard.runlog import RunDir
    from gpuwizard.ssh import HostSpec
    from gpuwizard.steps import Step

    steps = [Step(f"s{i}", f"s{i}", step_script(i)) for i in range(STEPS)]
    specs = [HostSpec(name=h.host_string, address=h.address, port=h.port, user=h.user, identity=h.client_key,
                      known_hosts=h.known_hosts) for h in hosts]
    with open(os.devnull, "w") as devnull, RunDir.create(None, "bench\n", "bench", base=tmp) as rd:
        rd.set_plan({s.name: steps for s in specs})
        ok = await Executor(specs, steps, Fanout(rd, LineRenderer(devnull)), ExecOptions(run_id=rd.run_id)).run()
    assert ok


def write_recipe(hosts, path: pathlib.Path) -> None:
    import yaml

    path.write_text(yaml.safe_dump({
        "version": 1, "name": "bench",
        "target": {"ssh": {"hosts": [h.host_string for h in hosts]}},
        "ssh": {"identity": hosts[0].client_key, "known_hosts": hosts[0].known_hosts},
        "steps": [{"name": f"s{i}", "run": step_script(i)} for i in range(STEPS)]}))


def gpuwizard_cli(hosts, tmp: pathlib.Path) -> None:
    recipe = tmp / "bench.yaml"
    write_recipe(hosts, recipe)
    env = dict(os.environ, XDG_STATE_HOME=str(tmp / "state"), PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, "-m", "gpuwizard.cli", "run", str(recipe), "--headless", "--fresh"],
                   check=True, env=env, stdout=subprocess.DEVNULL)


def pyinfra_run(hosts, tmp: pathlib.Path, venv: pathlib.Path) -> None:
    inv = tmp / "inventory.py"
    inv.write_text("hosts = [\n" + "".join(
        f"    ('h{i}', {{'ssh_hostname': '127.0.0.1', 'ssh_port': {h.port}, 'ssh_user': {h.user!r}, "
        f"'ssh_key': {h.client_key!r}, 'ssh_known_hosts_file': {h.known_hosts!r}, "
        f"'ssh_strict_host_key_checking': 'yes'}}),\n" for i, h in enumerate(hosts)) + "]\n")
    deploy = tmp / "deploy.py"
    deploy.write_text("from pyinfra.operations import server\n" + "".join(
        f"server.shell(name='s{i}', commands=[{step_script(i)!r}])\n" for i in range(STEPS)))
    subprocess.run([str(venv / "bin" / "pyinfra"), "-y", "--parallel", str(len(hosts)), str(inv), str(deploy)],
                   check=True, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def ansible_run(hosts, tmp: pathlib.Path, venv: pathlib.Path) -> None:
    inv = tmp / "hosts.ini"
    inv.write_text("[bench]\n" + "".join(
        f"h{i} ansible_host=127.0.0.1 ansible_port={h.port} ansible_user={h.user} "
        f"ansible_ssh_private_key_file={h.client_key} "
        f"ansible_ssh_common_args='-o UserKnownHostsFile={h.known_hosts} -o StrictHostKeyChecking=yes'\n"
        for i, h in enumerate(hosts)))
    play = tmp / "play.yml"
    play.write_text("- hosts: bench\n  gather_facts: false\n  tasks:\n" + "".join(
        f"    - name: s{i}\n      shell: {step_script(i)!r}\n" for i in range(STEPS)))
    env = dict(os.environ, ANSIBLE_HOST_KEY_CHECKING="True", ANSIBLE_PYTHON_INTERPRETER="/usr/bin/python3",
               ANSIBLE_LOCAL_TEMP=str(tmp / "ans"))
    subprocess.run([str(venv / "bin" / "ansible-playbook"), "-i", str(inv), "-f", str(len(hosts)), str(play)],
                   check=True, cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--venv", default="/tmp/benchvenv", help="venv holding pyinfra and ansible-core")
    ap.add_argument("--no-peers", action="store_true", help="skip pyinfra and ansible")
    ap.add_argument("--user", default="gwtest",
                    help="login user on the sshd hosts (default gwtest: a stock ~/.bashrc; this machine's root "
                         "~/.bashrc runs `pyenv init`, ~100 ms per command, which would swamp every tool)")
    args = ap.parse_args()
    venv = pathlib.Path(args.venv)
    notes = []
    have_pyinfra = (venv / "bin" / "pyinfra").exists() and not args.no_peers
    have_ansible = (venv / "bin" / "ansible-playbook").exists() and not args.no_peers
    if not have_pyinfra:
        notes.append(f"pyinfra skipped: not installed in {venv} (pip install pyinfra there)")
    if not have_ansible:
        notes.append(f"ansible-playbook skipped: not installed in {venv} (pip install ansible-core there)")
    rows = []
    for n in args.hosts:
        base = pathlib.Path(tempfile.mkdtemp(prefix="gw-bench-"))
        base.chmod(0o755)
        factory = SshdFactory(base)
        try:
            hosts = factory.start(n, user=args.user)
            fl = timed(lambda: asyncio.run(floor(hosts)), args.repeat)
            gw = timed(lambda: asyncio.run(gpuwizard_run(hosts, base / "runs")), args.repeat)
            cli = timed(lambda: gpuwizard_cli(hosts, base), args.repeat)
            row = {"hosts": n, "floor": fl, "gpuwizard": gw, "cli": cli}
            if have_pyinfra:
                row["pyinfra"] = timed(lambda: pyinfra_run(hosts, base, venv), 1)
            if have_ansible:
                row["ansible"] = timed(lambda: ansible_run(hosts, base, venv), 1)
            rows.append(row)
            print(f"# {n} hosts: " + ", ".join(f"{k} {v:.2f}s" for k, v in row.items() if k != "hosts"),
                  file=sys.stderr)
        finally:
            factory.close()
            shutil.rmtree(base, ignore_errors=True)
    target = {8: 1.3, 32: 1.5}
    print(f"\n{STEPS} steps x {LINES} lines per host, median of {args.repeat} (peers: 1 run)\n")
    print("| hosts | floor (asyncssh) | gpuwizard executor | ratio | target | gpuwizard CLI | pyinfra | ansible-playbook |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        ratio = r["gpuwizard"] / r["floor"]
        t = target.get(r["hosts"])
        verdict = f"<= {t}x {'ok' if ratio <= t else 'MISSED'}" if t else "-"
        fmt = lambda k: f"{r[k]:.2f} s" if k in r else "skipped"  # noqa: E731
        print(f"| {r['hosts']} | {fmt('floor')} | {fmt('gpuwizard')} | {ratio:.2f}x | {verdict} | {fmt('cli')} "
              f"| {fmt('pyinfra')} | {fmt('ansible')} |")
    for note in notes:
        print(f"\nNote: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
