"""The licence policy: SPDX spelling, the default allowed set, verdicts with and without an override, the catalog
against the Hub card, and the allowed set from a setting."""

from __future__ import annotations

import pytest

from hugflow_ray.core.licences import (
    DEFAULT_ALLOWED,
    KNOWN_LICENCES,
    LicenceVerdict,
    check_agrees,
    judge,
    normalise,
    parse_allowed,
)


@pytest.mark.parametrize(
    ("given", "spdx"),
    [
        ("cc-by-4.0", "CC-BY-4.0"),
        ("apache-2.0", "Apache-2.0"),
        ("mit", "MIT"),
        ("cc0-1.0", "CC0-1.0"),
        ("bsd-3-clause", "BSD-3-Clause"),
        ("cc-by-sa-4.0", "CC-BY-SA-4.0"),
        ("cc-by-nc-4.0", "CC-BY-NC-4.0"),
        ("cc-by-nc-nd-3.0", "CC-BY-NC-ND-3.0"),
        ("odc-by", "ODC-By-1.0"),
        ("odc-by-1.0", "ODC-By-1.0"),
        ("odbl", "ODbL-1.0"),
        ("pddl", "PDDL-1.0"),
        ("cdla-permissive-2.0", "CDLA-Permissive-2.0"),
        ("gpl-3.0", "GPL-3.0-only"),
        ("lgpl-2.1", "LGPL-2.1-only"),
        ("unlicense", "Unlicense"),
        ("CC-BY-4.0", "CC-BY-4.0"),
        (" Cc-By-Sa-3.0 ", "CC-BY-SA-3.0"),
        ("Other", "other"),
        ("UNKNOWN", "unknown"),
        ("openrail", "openrail"),
        ("my-own-Licence", "my-own-Licence"),
    ],
)
def test_licences_are_normalised_to_spdx_spelling(given: str, spdx: str) -> None:
    assert normalise(given) == spdx


def test_every_known_licence_is_an_spdx_id_in_spdx_spelling() -> None:
    licenses = pytest.importorskip("packaging.licenses")
    for licence in KNOWN_LICENCES:
        assert licenses.canonicalize_license_expression(licence) == licence
    assert {f"CC-BY-{v}" for v in ("1.0", "2.0", "2.5", "3.0", "4.0")} <= KNOWN_LICENCES


def test_the_default_set_holds_commercially_usable_licences_only() -> None:
    assert {"CC0-1.0", "CC-BY-4.0", "CC-BY-SA-4.0", "CC-BY-1.0", "PDDL-1.0", "ODC-By-1.0", "ODbL-1.0", "MIT",
            "Apache-2.0", "BSD-2-Clause", "BSD-3-Clause", "ISC", "Unlicense", "CDLA-Permissive-1.0",
            "CDLA-Permissive-2.0", "CDLA-Sharing-1.0"} <= DEFAULT_ALLOWED
    assert not any("-NC" in licence or "-ND" in licence for licence in DEFAULT_ALLOWED)
    assert not any("GPL" in licence or licence.startswith("MPL") for licence in DEFAULT_ALLOWED)
    assert DEFAULT_ALLOWED <= KNOWN_LICENCES


def test_an_allowed_licence_is_allowed_in_any_spelling() -> None:
    verdict = judge("cc-by-4.0", allowed=DEFAULT_ALLOWED, override=None)
    assert verdict == LicenceVerdict("CC-BY-4.0", allowed=True, overridden=False, reason="in the allowed licences")
    assert verdict.line() == "CC-BY-4.0: allowed"


@pytest.mark.parametrize(
    ("licence", "why"),
    [
        ("CC-BY-NC-4.0", "non-commercial"),
        ("CC-BY-NC-SA-4.0", "non-commercial"),
        ("CC-BY-ND-4.0", "no derivatives"),
        ("gpl-3.0", "a copyleft software licence"),
        ("AGPL-3.0-or-later", "a copyleft software licence"),
        ("MPL-2.0", "a copyleft software licence"),
        ("openrail", "not a licence id this policy knows"),
    ],
)
def test_a_licence_outside_the_policy_is_refused_with_the_way_to_override(licence: str, why: str) -> None:
    verdict = judge(licence, allowed=DEFAULT_ALLOWED, override=None)
    assert not verdict.allowed and not verdict.overridden
    assert verdict.reason == f"not in the allowed licences: {why}"
    assert verdict.line() == (f"{normalise(licence)}: refused (not in the allowed licences: {why}); "
                              "add `licence_override: <reason>` to the request or catalog entry to bring it in anyway")


def test_an_override_brings_a_refused_licence_in_and_records_why() -> None:
    verdict = judge("CC-BY-NC-4.0", allowed=DEFAULT_ALLOWED, override="  Internal research only, approved by legal  ")
    assert (verdict.allowed, verdict.overridden) == (True, True)
    assert verdict.reason == "Internal research only, approved by legal"
    assert verdict.line() == "CC-BY-NC-4.0: allowed by override (reason: Internal research only, approved by legal)"


def test_an_override_is_not_needed_for_an_allowed_licence() -> None:
    verdict = judge("MIT", allowed=DEFAULT_ALLOWED, override="checked anyway by the team")
    assert (verdict.allowed, verdict.overridden) == (True, False)


@pytest.mark.parametrize("licence", [None, "", "  ", "unknown", "other", "Other"])
def test_a_licence_not_stated_is_refused_until_checked(licence: str | None) -> None:
    verdict = judge(licence, allowed=DEFAULT_ALLOWED | {"other"}, override=None)
    assert not verdict.allowed
    assert verdict.reason == "the licence is not stated"
    assert "find the licence (the dataset card, the source's site); if it may be used here, add `licence_override: <reason>`" in verdict.line()
    assert verdict.line().startswith(f"{verdict.licence or '(no licence)'}: refused (the licence is not stated); ")


def test_a_licence_not_stated_can_be_overridden() -> None:
    verdict = judge(None, allowed=DEFAULT_ALLOWED, override="Licence read on the project page: CC-BY-4.0")
    assert (verdict.licence, verdict.allowed, verdict.overridden) == (None, True, True)
    assert verdict.line() == "(no licence): allowed by override (reason: Licence read on the project page: CC-BY-4.0)"


def test_a_blank_override_is_no_override() -> None:
    assert not judge("CC-BY-NC-4.0", allowed=DEFAULT_ALLOWED, override="   ").allowed


def test_the_allowed_set_is_compared_in_spdx_spelling() -> None:
    assert judge("CC-BY-NC-4.0", allowed=frozenset({"cc-by-nc-4.0"}), override=None).allowed
    assert not judge("CC-BY-4.0", allowed=frozenset(), override=None).allowed


@pytest.mark.parametrize(
    ("catalog", "card"),
    [("CC-BY-4.0", "cc-by-4.0"), ("ODC-By-1.0", "odc-by"), ("GPL-3.0-only", "gpl-3.0"), ("MIT", None),
     ("MIT", ""), ("MIT", "unknown"), ("CC-BY-4.0", "other")],
)
def test_the_catalog_and_the_card_agree(catalog: str, card: str | None) -> None:
    assert check_agrees(catalog, card) is None


def test_a_card_with_another_licence_disagrees_with_the_catalog() -> None:
    problem = check_agrees("cc-by-4.0", "cc-by-nc-4.0")
    assert problem is not None
    assert problem.startswith("the catalog says the licence is CC-BY-4.0 but the dataset card says CC-BY-NC-4.0")
    assert "correct the entry's `licence`" in problem


def test_the_allowed_set_is_read_from_a_setting() -> None:
    assert parse_allowed("cc-by-4.0, MIT ,odc-by") == frozenset({"CC-BY-4.0", "MIT", "ODC-By-1.0"})
    assert parse_allowed("MIT") == frozenset({"MIT"})


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "empty item"), ("MIT,,CC0-1.0", "empty item"), ("MIT,", "empty item"), ("CC BY 4.0", "not a licence id"),
     ("MIT;ISC", "not a licence id")],
)
def test_a_malformed_setting_is_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_allowed(text)
