"""The error types raised by the radiograph and CT readers (one family: every one is a ``RadiographReadError``)."""

from __future__ import annotations

__all__ = ["CTReadError", "RadiographReadError"]


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


class CTReadError(RadiographReadError):
    """A file or folder could not be turned into a usable CT volume; the message names it and the fix.

    A :class:`~monai_osteo.data.readers.errors.RadiographReadError` (hence a ``ValueError``), so code that
    catches reader errors catches this one too; picklable across DataLoader workers.

    Args:
        filename: the offending file or DICOM folder.
        problem: what is wrong (and how to fix it).
    """

    def __init__(self, filename: str, problem: str) -> None:
        super().__init__(filename, problem)
        self.args = (f"Cannot load CT volume {self.filename!r}: {problem}",)
