"""The single error type raised by the radiograph readers."""

from __future__ import annotations

__all__ = ["RadiographReadError"]


class RadiographReadError(ValueError):
    """An image file could not be turned into a usable radiograph or volume.

    Raised for missing, empty, truncated, corrupt or unsupported files, wrong dimensionality, non-finite or
    constant pixel values. The message names the file, says what is wrong and, where possible, how to fix it.
    Exceptions from the underlying libraries (pydicom, PIL, nibabel, ITK) are chained as ``__cause__``.

    Args:
        filename: the offending file.
        problem: what is wrong (and how to fix it).
    """

    def __init__(self, filename: str, problem: str) -> None:
        self.filename = str(filename)
        self.problem = problem
        super().__init__(f"Cannot load radiograph {self.filename!r}: {problem}")

    def __reduce__(self):  # keep the exception picklable across DataLoader workers
        return (type(self), (self.filename, self.problem))
