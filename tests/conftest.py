import signal

pytest_plugins = ["tests.fixtures_pg", "tests.fixtures_s3"]

# A suite started as a background job of a non-interactive shell (`make test &`, nohup in a script) inherits
# SIGINT ignored, and every process it starts keeps it ignored: Python then installs no KeyboardInterrupt handler,
# and the tests that press Ctrl-C on a CLI child (stats --watch, the DuckDB REPL) would wait for nothing. Those
# tests are about what a user's Ctrl-C does, so the suite takes SIGINT back for itself and its children.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
