"""The one exception type that means "the user asked for something invalid".

The command line turns it into a single line on stderr and exit code 2; library
users catch it like any ValueError.
"""


class UsageError(ValueError):
    """Invalid user input: an unknown name, a value out of range, a bad path."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; a sweep records the trial as failed with this reason."""


def require(condition: bool, message: str) -> None:
    """Raise UsageError(message) unless `condition` holds; keeps validation one line each."""
    if not condition:
        raise UsageError(message)
