from monai_osteo.transforms.letterbox.array import CropLetterbox, Letterbox, letterbox_padding, letterbox_window
from monai_osteo.transforms.letterbox.dictionary import CropLetterboxd, LetterboxD, Letterboxd, LetterboxDict

__all__ = ["CropLetterbox", "CropLetterboxd", "Letterbox", "LetterboxD", "LetterboxDict", "Letterboxd",
           "letterbox_padding", "letterbox_window"]
