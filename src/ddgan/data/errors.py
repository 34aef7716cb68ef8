"""The one exception the data layer raises for problems a user can fix."""


class DataError(ValueError):
    """A one-line, user-facing data problem: names the path or value and says how to fix it."""
