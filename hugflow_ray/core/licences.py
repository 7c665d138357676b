"""The licence policy: which licences a dataset may carry to be brought in, how a catalog entry's licence and its
Hub card's are compared, and the spelling both are compared in (SPDX ids).

The default policy allows the licences under which a dataset may be used commercially, including to train a
model that is then sold or served, with no more than attribution or share-alike duties:

* In: public-domain dedications (``CC0-1.0``, ``PDDL-1.0``, ``Unlicense``): no conditions at all.
* In: attribution licences (``CC-BY-*``, ``ODC-By-1.0``, ``CDLA-Permissive-*``, ``MIT``, ``Apache-2.0``,
  ``BSD-2-Clause``, ``BSD-3-Clause``, ``ISC``): the credit they ask for is kept in each sidecar's source.
* In: share-alike data licences (``CC-BY-SA-*``, ``ODbL-1.0``, ``CDLA-Sharing-1.0``): they allow commercial use;
  their duty (shared adaptations keep the licence) bites only when the data itself is passed on, and
  CDLA-Sharing says outright that results such as trained models are free of it.
* Out: non-commercial (``-NC``) licences: the data may not be used for commercial ends, which is this project's
  purpose.
* Out: no-derivatives (``-ND``) licences: training, mixing and cutting are adaptations that may not be shared.
* Out: copyleft software licences (GPL, LGPL, AGPL, MPL, EPL, EUPL): their duties are written for a program's
  source code, and how far they reach into a data set and a model trained on it is unsettled; the AGPL adds a
  network clause. A dataset under one is brought in by an entry's ``licence_override`` after someone has read it.
* Out: anything else (OpenRAIL and other use-restricted licences, custom terms, a licence not stated): someone
  reads it first, and records why in ``licence_override``.

* In as well: the other permissive software licences that ask for attribution or less (``MIT-0``, ``0BSD``,
  ``Zlib``, ``BSL-1.0``).

A deployment may replace the default set with its own, read from a comma-separated setting by :func:`parse_allowed`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# An SPDX-looking licence id, as a catalog entry's ``licence`` is written.
LICENCE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+-]*")

_CC_VERSIONS = ("1.0", "2.0", "2.5", "3.0", "4.0")
_CC_KINDS = ("BY", "BY-SA", "BY-NC", "BY-ND", "BY-NC-SA", "BY-NC-ND")

# The SPDX ids this module knows, in SPDX spelling: the licences datasets on the Hub are published under.
KNOWN_LICENCES: frozenset[str] = frozenset(
    [f"CC-{kind}-{version}" for kind in _CC_KINDS for version in _CC_VERSIONS]
    + [
        "CC0-1.0", "PDDL-1.0", "ODC-By-1.0", "ODbL-1.0", "Unlicense",
        "CDLA-Permissive-1.0", "CDLA-Permissive-2.0", "CDLA-Sharing-1.0",
        "MIT", "MIT-0", "Apache-2.0", "BSD-2-Clause", "BSD-3-Clause", "BSD-3-Clause-Clear", "0BSD", "ISC", "Zlib",
        "BSL-1.0", "WTFPL", "PostgreSQL", "NCSA", "AFL-3.0", "Artistic-2.0", "ECL-2.0", "OSL-3.0", "MS-PL",
        "OFL-1.1", "LPPL-1.3c", "etalab-2.0",
        "GPL-2.0-only", "GPL-2.0-or-later", "GPL-3.0-only", "GPL-3.0-or-later",
        "LGPL-2.1-only", "LGPL-2.1-or-later", "LGPL-3.0-only", "LGPL-3.0-or-later",
        "AGPL-3.0-only", "AGPL-3.0-or-later",
        "MPL-2.0", "EPL-1.0", "EPL-2.0", "EUPL-1.1", "EUPL-1.2",
    ]
)

# Other spellings, lowercase: the Hub card's ids that are not SPDX ids lowercased, and the bare GPL-family ids SPDX
# deprecated in favour of their '-only' form, which means the same.
_ALIASES = {
    "odc-by": "ODC-By-1.0",
    "odbl": "ODbL-1.0",
    "pddl": "PDDL-1.0",
    "gpl-2.0": "GPL-2.0-only",
    "gpl-3.0": "GPL-3.0-only",
    "lgpl-2.1": "LGPL-2.1-only",
    "lgpl-3.0": "LGPL-3.0-only",
    "agpl-3.0": "AGPL-3.0-only",
}

# What a Hub card says when it names no licence this policy can judge: "other" is a licence outside the Hub's
# list (its text is elsewhere in the card), "unknown" none at all.
NOT_STATED = frozenset({"other", "unknown"})

_SPELLINGS = {licence.lower(): licence for licence in KNOWN_LICENCES} | _ALIASES | {m: m for m in NOT_STATED}

DEFAULT_ALLOWED: frozenset[str] = frozenset(
    [f"CC-{kind}-{version}" for kind in ("BY", "BY-SA") for version in _CC_VERSIONS]
    + [
        "CC0-1.0", "PDDL-1.0", "Unlicense", "ODC-By-1.0", "ODbL-1.0",
        "CDLA-Permissive-1.0", "CDLA-Permissive-2.0", "CDLA-Sharing-1.0",
        "MIT", "Apache-2.0", "BSD-2-Clause", "BSD-3-Clause", "ISC",
        "MIT-0", "0BSD", "Zlib", "BSL-1.0",
    ]
)

_COPYLEFT_SOFTWARE = re.compile(r"(A|L)?GPL-|MPL-|EPL-|EUPL-")
_OVERRIDE_FIX = "add `licence_override: <reason>` to the request or catalog entry to bring it in anyway"
MIN_OVERRIDE_REASON_LENGTH = 10  # long enough to be a reason, not "ok" or "approved"


def override_problem(reason: str | None) -> tuple[str, str] | None:
    """What is wrong with a ``licence_override`` and its fix, as (problem, fix); None when it is a real reason (or
    there is none)."""
    if reason is None or len(reason) >= MIN_OVERRIDE_REASON_LENGTH:
        return None
    fix = ("Say why the dataset may be used despite its licence, and who checked "
           f"({MIN_OVERRIDE_REASON_LENGTH} characters or more).")
    return f"{reason!r} is too short to be a reason", fix


def normalise(licence: str) -> str:
    """``licence`` in SPDX spelling, matched case-insensitively (``cc-by-4.0`` -> ``CC-BY-4.0``, the Hub card's
    ``odc-by`` -> ``ODC-By-1.0``); ``other`` and ``unknown`` in lowercase; anything else returned as given."""
    return _SPELLINGS.get(licence.strip().lower(), licence)


@dataclass(frozen=True)
class LicenceVerdict:
    """Whether a dataset's licence lets it in.

    Attributes:
        licence: the licence, normalised; None when none was given.
        allowed: whether the dataset may be brought in.
        overridden: allowed only because the entry records an override.
        reason: why: the policy's refusal, or the override's recorded reason.
    """

    licence: str | None
    allowed: bool
    overridden: bool
    reason: str

    def line(self) -> str:
        """The verdict as one line for people, e.g. ``CC-BY-4.0: allowed``."""
        name = self.licence or "(no licence)"
        if self.overridden:
            return f"{name}: allowed by override (reason: {self.reason})"
        if self.allowed:
            return f"{name}: allowed"
        if _not_stated(self.licence):
            return (f"{name}: refused ({self.reason}); find the licence (the dataset card, the source's site); if it "
                    f"may be used here, {_OVERRIDE_FIX}")
        return f"{name}: refused ({self.reason}); {_OVERRIDE_FIX}"


def judge(licence: str | None, *, allowed: frozenset[str], override: str | None) -> LicenceVerdict:
    """Judge ``licence`` against the ``allowed`` licences.

    Args:
        licence: the dataset's licence, in any spelling :func:`normalise` knows; None or empty: not stated.
        allowed: the allowed licences (normalised here too).
        override: the entry's ``licence_override`` reason; it brings in a licence the policy refuses.
    """
    normal = normalise(licence) if licence and licence.strip() else None
    override = override.strip() if override and override.strip() else None
    # a licence not stated is never in the allowed set, even if someone listed "other" there
    if not _not_stated(normal) and normal in {normalise(a) for a in allowed}:
        return LicenceVerdict(normal, allowed=True, overridden=False, reason="in the allowed licences")
    if override is not None:
        return LicenceVerdict(normal, allowed=True, overridden=True, reason=override)
    if _not_stated(normal):
        return LicenceVerdict(normal, allowed=False, overridden=False, reason="the licence is not stated")
    why = f"not in the allowed licences: {_why_not(normal)}"
    return LicenceVerdict(normal, allowed=False, overridden=False, reason=why)


def check_agrees(catalog_licence: str, card_licence: str | None) -> str | None:
    """The problem when the catalog and the dataset's Hub card name different licences; None when they agree
    after normalising, or when the card names none (None, empty, ``unknown``, ``other``): then the catalog's licence
    is the only statement, and :func:`judge` decides on it alone."""
    if not card_licence or _not_stated(normalise(card_licence)):
        return None
    catalog, card = normalise(catalog_licence), normalise(card_licence)
    if catalog == card:
        return None
    return (f"the catalog says the licence is {catalog} but the dataset card says {card}: read the card and correct "
            "the entry's `licence`, or ask the dataset's authors to correct the card")


def parse_allowed(text: str) -> frozenset[str]:
    """The allowed licences from a comma-separated settings value, normalised (``"cc-by-4.0, MIT"``).

    Raises:
        ValueError: an item is empty (a doubled or trailing comma) or not a licence id.
    """
    licences: set[str] = set()
    for item in (part.strip() for part in text.split(",")):
        if not item:
            raise ValueError(f"{text!r} has an empty item: write licence ids separated by single commas")
        if not LICENCE_ID.fullmatch(item):
            raise ValueError(f"{item!r} is not a licence id: write SPDX ids such as CC-BY-4.0, separated by commas")
        licences.add(normalise(item))
    return frozenset(licences)


def _not_stated(licence: str | None) -> bool:
    return licence is None or licence in NOT_STATED


def _why_not(licence: str) -> str:
    """The policy's reason a licence outside the allowed set is out, as a short phrase."""
    if "-NC" in licence:
        return "non-commercial"
    if "-ND" in licence:
        return "no derivatives"
    if _COPYLEFT_SOFTWARE.match(licence):
        return "a copyleft software licence"
    if licence not in KNOWN_LICENCES:
        return "not a licence id this policy knows"
    return "not reviewed for the default policy"
