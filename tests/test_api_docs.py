"""The API reference: every public name has a docstring, and docs/api.md is what the generator writes."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import attribfast

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import gen_api_docs  # noqa: E402  (scripts/gen_api_docs.py)


def test_every_public_name_has_a_docstring():
    docs = gen_api_docs.public_docs()
    assert set(docs) == set(attribfast.__all__)
    missing = [name for name, doc in docs.items() if not doc or len(doc) < 20]
    assert not missing, f"public names without a docstring: {missing}"


def test_generated_and_inherited_docstrings_do_not_count():
    @dataclass(frozen=True)
    class Bare:
        x: int

    class Child(Bare):
        pass

    assert gen_api_docs.own_doc(Bare) is None  # dataclasses write "Bare(x: int)"
    assert gen_api_docs.own_doc(Child) is None

    def documented():
        """Does a thing."""

    assert gen_api_docs.own_doc(documented) == "Does a thing."


def test_api_reference_is_up_to_date():
    committed = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    assert committed == gen_api_docs.render(), "docs/api.md is stale: run python scripts/gen_api_docs.py"
    for name in attribfast.__all__:
        assert f"## `attribfast.{name}`" in committed
    for method in attribfast.METHODS:
        assert f"- `{method!r}` →" in committed
