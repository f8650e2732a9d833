from monai_osteo.transforms.letterbox.array import Letterbox, letterbox_padding
from monai_osteo.transforms.letterbox.dictionary import Letterboxd, LetterboxD, LetterboxDict

__all__ = ["Letterbox", "LetterboxD", "LetterboxDict", "Letterboxd", "letterbox_padding"]
