"""OS Login on a VM we created, seen in the VM's own metadata (issue 12 item 11).

An organisation policy (``compute.requireOsLogin``) or an image can turn OS Login on
without any project metadata, so :func:`gpuwizard.gcp.failover.check_project` cannot see
it before the insert. The guest then ignores the ``ssh-keys`` metadata gpuwizard logs in
with, and SSH is refused after the VM is created and billed. Where Compute Engine shows
``enable-oslogin`` in the instance's metadata, we stop before waiting on SSH, name the one
command that fixes it, and let the caller say that the VM runs and how to delete it.
Where nothing shows it, the first refusal of our key by a VM we created carries
:func:`refusal_hint`: our key is in the VM's metadata, so a refusal means OS Login.
"""

from __future__ import annotations

from gpuwizard.gcp.context import Provisioner
from gpuwizard.gcp.errors import OS_LOGIN, GcpError
from gpuwizard.gcp.inventory import VmInfo
from gpuwizard.gcp.quota import os_login_enabled


def check_vm(p: Provisioner, vm: VmInfo) -> None:
    """Raise (kind ``os_login``) when ``vm`` has OS Login on and gpuwizard logs in with a
    metadata key; with ``ssh.user`` set in the recipe (an OS Login user) only warn."""
    if p.os_login or not os_login_enabled(vm.metadata):
        return
    fix = f"`gcloud compute os-login ssh-keys add --key-file {p.identity}.pub`"
    if p.recipe.ssh.user:
        p.say(f"{vm.name}: OS Login is on for this VM (enable-oslogin in its metadata): logging in as "
              f"{p.user}, which must be your OS Login user with the key added ({fix})")
        return
    raise GcpError(
        f"VM {vm.name} ({vm.zone}) has OS Login on (enable-oslogin=TRUE in its own metadata, from an organisation "
        f"policy or the image; the project's metadata does not say so), so it ignores the SSH key gpuwizard put "
        f"in its metadata and SSH would be refused: run {fix}, set ssh.user in the recipe to your OS Login user "
        f"(`gcloud compute os-login describe-profile` shows it) and run again with --resume.", kind=OS_LOGIN)


def refusal_hint(p: Provisioner) -> str:
    """What it means when a VM we created refuses our SSH key, and the one command that
    fixes it (the executor adds it to the refusal; the closing lines offer the deletion)."""
    fix = f"`gcloud compute os-login ssh-keys add --key-file {p.identity}.pub`"
    if p.os_login:
        return (f"OS Login is on for project {p.project}: add the key to your OS Login profile with {fix} and "
                f"check that ssh.user ({p.user}) is your OS Login user, then run again with --resume.")
    return (f"gpuwizard's key is in this VM's metadata, so a refusal means OS Login is enforced, likely by an "
            f"organisation policy (compute.requireOsLogin) the project's metadata does not show: run {fix}, set "
            f"ssh.user in the recipe to your OS Login user (`gcloud compute os-login describe-profile` shows it) "
            f"and run again with --resume.")
