"""The reference configuration users copy from (etc/cas-mirror.yaml): the documented
defaults. test_config checks that they are the code's defaults; other tests compare with
them instead of repeating upstream URLs."""

from __future__ import annotations

from pathlib import Path

import yaml

REFERENCE_CONFIG = Path(__file__).resolve().parents[2] / "etc" / "cas-mirror.yaml"
DOCUMENTED = yaml.safe_load(REFERENCE_CONFIG.read_text())
