"""asyncssh executor: hosts x steps -> a stream of events (see :mod:`.core`).

The package's modules, each with one job:

- :mod:`.core`     ``Executor``: fans the hosts out, RunStarted/RunFinished, cancel, kill_now
- :mod:`.host`     one host's pipeline: connect, check, upload, run, reboot, reconnect
- :mod:`.remote`   the shell sent to the host: wrapper, env on stdin, kill commands
- :mod:`.procs`    ``RemoteProc``: the record that lets a later attempt stop a left-over step
- :mod:`.kill`     stopping a step's processes (timeout, Ctrl-C, a copy left by an earlier attempt)
- :mod:`.stream`   a step's bytes -> masked Output and Progress events
- :mod:`.options`  ``ExecOptions``, ``fingerprint``

asyncssh itself is behind one adaptor, :mod:`gpuwizard.ssh`.
"""

from gpuwizard.executor.core import Executor
from gpuwizard.executor.options import NOTE, ExecOptions, Sink, fingerprint
from gpuwizard.executor.procs import RemoteProc
from gpuwizard.executor.remote import PID_MARK, TOKEN_VAR
from gpuwizard.executor.stream import CHUNK

__all__ = ["CHUNK", "NOTE", "PID_MARK", "TOKEN_VAR", "ExecOptions", "Executor", "RemoteProc", "Sink", "fingerprint"]
