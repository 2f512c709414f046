"""User-facing errors.

Every error a user can cause (bad input, missing data, corrupt stream, unknown name) is raised as a
`BenchError` whose message is one line naming the problem and the fix. The CLI prints it without a
traceback; anything else escaping is a bug in the suite.
"""


class BenchError(Exception):
    """A problem the user can fix; the message says how."""


class DataError(BenchError):
    """A sequence, file or manifest cannot be read as asked."""


class BitstreamError(BenchError):
    """Bytes that are not a valid, intact stream of this suite."""


class MethodError(BenchError):
    """An unknown or unavailable method, or a configuration it cannot honour."""


class ConfigError(BenchError):
    """A malformed configuration, budget or thresholds file."""


class MetricError(BenchError):
    """Inputs a metric cannot score (shape, dtype, range)."""


class ClusterError(BenchError):
    """A cluster that cannot run the jobs as asked (unreachable, a request it refuses or never starts)."""
