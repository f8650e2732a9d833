"""The probe takes the SSL stage's best monitored encoder when there is one, else the final one."""

from __future__ import annotations

from monai_osteo.bundle.hand_osteo import BEST_ENCODER, ssl_encoder_checkpoint


def test_best_encoder_preferred_over_final(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"final")
    assert ssl_encoder_checkpoint(tmp_path) == str(tmp_path / "model.pt")
    (tmp_path / BEST_ENCODER).write_bytes(b"best")
    assert ssl_encoder_checkpoint(tmp_path) == str(tmp_path / BEST_ENCODER)
