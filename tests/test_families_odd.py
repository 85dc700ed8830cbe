"""The family matrix's other half: the families tests/test_families.py leaves out, with its check."""

from __future__ import annotations

import pytest
from families import FAMILIES
from test_families import check_family

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor.*did not already require gradients:UserWarning")


@pytest.mark.parametrize("family", FAMILIES[1::2], ids=[f.key for f in FAMILIES[1::2]])
def test_family_exports_and_agrees_with_captum(family, tmp_path):
    check_family(family, tmp_path)
