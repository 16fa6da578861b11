import os

# Keep XLA from grabbing every core's worth of threads in tests that spawn subprocesses;
# the numbers do not depend on it.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
