"""A pytest plugin that records each test's CPU time: user + system seconds of this process
and of the child processes it waited for (``resource.getrusage`` of ``RUSAGE_SELF`` and
``RUSAGE_CHILDREN``), over the test's setup, call and teardown (so a module-scoped fixture's
setup is charged to the first test that uses it). Unlike wall time, CPU time hardly depends on
how loaded the machine is, so it ranks tests on a busy machine too.

Enabled by ``tests/conftest.py`` when the environment variable ``RBK_TEST_CPU_TIMES`` names a
file: the file gets a table of the tests run so far, heaviest first, and its total (rewritten
after each test, so an interrupted run leaves one too)::

    RBK_TEST_CPU_TIMES=/tmp/cpu.txt .venv/bin/python -m pytest -q

A normal run (variable unset) does not load it. Under pytest-xdist each worker writes its own
table, ``<file>.<worker id>`` (``gw0``, ``gw1``, ...); with ``-n 0`` the one process writes ``<file>``."""

import os
import resource
import time

import pytest


def cpu_seconds():
    """User + system CPU seconds of this process and of its waited-for children so far."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


class CpuTimes:
    """Per-test CPU and wall seconds, written as a sorted table to ``path`` after each test."""

    def __init__(self, path):
        worker = os.environ.get("PYTEST_XDIST_WORKER")
        self.path = f"{path}.{worker}" if worker else path
        self.rows = {}  # nodeid -> (cpu s, wall s)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        cpu0, wall0 = cpu_seconds(), time.perf_counter()
        yield
        self.rows[item.nodeid] = (cpu_seconds() - cpu0, time.perf_counter() - wall0)
        self.write()  # after every test, so that an interrupted run leaves its table too

    def pytest_unconfigure(self, config):
        if self.rows:  # (the xdist controller runs no test: it writes nothing)
            self.write()

    def write(self):
        rows = sorted(self.rows.items(), key=lambda row: -row[1][0])
        total_cpu = sum(cpu for cpu, _ in self.rows.values())
        total_wall = sum(wall for _, wall in self.rows.values())
        lines = [f"{'cpu_s':>9} {'wall_s':>9}  test"]
        lines += [f"{cpu:9.2f} {wall:9.2f}  {nodeid}" for nodeid, (cpu, wall) in rows]
        lines.append(f"{total_cpu:9.2f} {total_wall:9.2f}  TOTAL ({len(rows)} tests)")
        with open(self.path, "w") as f:
            f.write("\n".join(lines) + "\n")
