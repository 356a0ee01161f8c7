"""One exception root for everything raytailor reports to a user.

Messages follow one rule: say which rule was broken, the value that broke it, and the fix,
on one line. The CLI prints ``str(error)`` to stderr and exits with code 2.
"""


class RaytailorError(Exception):
    """Root of every error raytailor raises on purpose."""


class SpecError(RaytailorError):
    """The experiment spec (YAML or --set) is invalid."""


class DataError(RaytailorError):
    """A dataset cannot be found, read or split as asked."""


class BackboneError(RaytailorError):
    """Unknown backbone, unreadable weights, or weights that do not fit the architecture."""


class TailoringError(RaytailorError):
    """A tailoring run cannot continue (e.g. pruning removed every path to the classifier)."""


class ExportError(RaytailorError):
    """A saved model directory is missing, incomplete or of an unknown format."""
