"""MONAI Label task classes of the monai_osteo app (infer, train, active learning); the logic is in monai_osteo."""
