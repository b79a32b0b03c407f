"""The refusals lenet_exp reports in one line: a mistake in the config or the overrides, and a folder that turns a
run away. (Data, checkpoint and record errors are declared beside what raises them.)"""


class ConfigError(ValueError):
    """A user mistake in the config or the overrides."""


class FolderRefused(ConfigError):
    """This folder's record belongs to another run, or another process writes there: nothing was written."""
