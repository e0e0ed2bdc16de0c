"""A real single-node SLURM cluster for the tests, from Debian's ``slurm-wlm`` and ``munge`` packages.

``slurm_cluster`` (session scope) writes a ``slurm.conf`` for this machine (all its CPUs, its memory, one partition
``debug``, no accounting) and a munge key in a temporary directory, starts ``munged`` on a socket of its own and
``slurmctld`` and ``slurmd`` on free ports, waits until ``sinfo`` shows the node idle, and stops them at the end.
It yields the environment a process needs to talk to that cluster (``SLURM_CONF``). Where the packages are missing
or the tests do not run as root (``slurmd`` must), the SLURM tests are skipped with that reason; ``.ci/run``
installs the packages where it can.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

DAEMONS = ("munged", "slurmctld", "slurmd", "sinfo", "sbatch", "srun")


def why_no_slurm() -> str | None:
    missing = [name for name in DAEMONS if shutil.which(name) is None and not Path(f"/usr/sbin/{name}").exists()]
    if missing:
        return f"SLURM is not installed here (missing {', '.join(missing)}; apt-get install -y slurm-wlm munge)"
    if os.geteuid() != 0:
        return "starting a local SLURM cluster needs root (slurmd)"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def memory_mib() -> int:
    with open("/proc/meminfo") as meminfo:
        total_kib = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal:"))
    return total_kib // 1024 - 1024


def slurm_conf(root: Path, host: str) -> str:
    return f"""ClusterName=labelsmooth-tests
SlurmctldHost={host}
AuthType=auth/munge
AuthInfo=socket={root}/munge/munge.socket.2
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmUser=root
SlurmdUser=root
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmdSpoolDir={root}/spool
StateSaveLocation={root}/state
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
KillWait=5
NodeName={host} CPUs={os.cpu_count()} RealMemory={memory_mib()} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
"""


def _sbin(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def _stop(pid_file: Path) -> None:
    with contextlib.suppress(OSError, ValueError):
        os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    reason = why_no_slurm()
    if reason is not None:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("slurm")
    for folder in ("munge", "spool", "state"):
        (root / folder).mkdir()
    (root / "munge").chmod(0o700)
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    conf = root / "slurm.conf"
    conf.write_text(slurm_conf(root, socket.gethostname()))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    started = time.monotonic()
    munge = root / "munge"
    subprocess.run(
        [_sbin("munged"), "--force", f"--socket={munge}/munge.socket.2", f"--key-file={key}",
         f"--log-file={munge}/munged.log", f"--pid-file={munge}/munged.pid", f"--seed-file={munge}/munged.seed"],
        check=True, env=env,
    )  # fmt: skip
    try:
        subprocess.run([_sbin("slurmctld")], check=True, env=env)
        subprocess.run([_sbin("slurmd")], check=True, env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True).stdout
            if state.strip() == "idle":
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"the local SLURM node did not become idle in 60 s; see {root}/slurmctld.log and slurmd.log")
        env["LABELSMOOTH_SLURM_FIXTURE_S"] = f"{time.monotonic() - started:.1f}"
        yield {"SLURM_CONF": str(conf)}
    finally:
        subprocess.run(["scancel", "--full", "--user=root"], env=env, capture_output=True)
        for pid_file in (root / "slurmd.pid", root / "slurmctld.pid", munge / "munged.pid"):
            _stop(pid_file)
