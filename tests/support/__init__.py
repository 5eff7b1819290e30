"""What the test suites share (servers, targets, keys, clients), imported as ``tests.support``."""
