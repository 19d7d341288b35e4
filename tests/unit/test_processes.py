import os
import subprocess
import sys
import uuid

from loadtest import processes
from loadtest.wait import until

# The main thread leaves (pthread_exit) while another thread lives on: the leader is a zombie
# but the process still runs, as a Go program's may while a thread holds a listening socket.
ZOMBIE_LEADER = """
import ctypes, sys, threading, time
threading.Thread(target=time.sleep, args=(float(sys.argv[1]),)).start()
ctypes.CDLL(None).pthread_exit(None)
"""


def test_running_until_the_last_thread_has_exited():
    p = subprocess.Popen([sys.executable, "-c", ZOMBIE_LEADER, "1.5"])
    try:
        assert until(
            lambda: processes.argv(p.pid) == [], "the leader to turn zombie", 10, interval=0.05
        )
        assert processes.running(p.pid)  # the leader is a zombie, its thread is not
        assert until(
            lambda: not processes.running(p.pid), "the last thread to exit", 10, interval=0.05
        )
    finally:
        p.kill()
        p.wait()
    assert not processes.running(p.pid)


def test_mentioning_argv_and_cpu_rss():
    needle = f"needle-{uuid.uuid4().hex}"
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", needle])
    try:
        assert until(
            lambda: p.pid in processes.mentioning(needle), "the child to appear", 10, interval=0.05
        )
        assert processes.mentioning(needle)[p.pid][-1] == needle
        assert list(processes.mentioning(needle)) == [p.pid]
    finally:
        p.kill()
        p.wait()
    assert processes.argv(p.pid) == [] and processes.cpu_rss(p.pid) is None
    got = processes.cpu_rss(os.getpid())
    assert got is not None
    cpu, rss = got
    assert cpu > 0 and rss > 0
    assert processes.memory_total_bytes() > 2**20
