"""The warning category of ``lightning_skd``."""


class LightningSKDWarning(UserWarning):
    """The category of every warning this library emits, so users and tests can filter it.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore", LightningSKDWarning)  # silence lightning_skd only
        ...     warnings.warn("a lightning_skd warning", LightningSKDWarning)

    """
