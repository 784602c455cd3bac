"""Build an English-German parallel corpus from the gettext message catalogs of Debian packages.

No translation corpus (IWSLT, Multi30k, WMT, Europarl, Tatoeba) can be downloaded on the development machines: only
PyPI, Debian packages and npm are reachable. Debian's packages do carry human translations: the German message
catalogs (``.mo``) of programs, English ``msgid`` -> German ``msgstr``. This script downloads the packages listed in
:data:`PACKAGES` with ``apt-get download`` (run ``apt-get update`` once first), unpacks them with ``dpkg -x``, reads
every German catalog (``.../de/LC_MESSAGES/*.mo``, ``.../de_DE/LC_MESSAGES/*.mo``, WordPress' ``*de_DE.mo``) with
Python's ``gettext`` and keeps the pairs that look like text:

- plural entries, the catalog header and untranslated entries are skipped (fuzzy entries never reach a ``.mo``);
  a message context (``msgctxt``, used by LibreOffice and KDE for every message) is dropped and the message kept;
- accelerator markers are removed (``~`` LibreOffice, ``&`` Qt/KDE (``&&`` -> ``&``), a single ``_`` GTK);
  whitespace (newlines, tabs) becomes single spaces;
- skipped: pairs whose sides are equal (untranslated copies, names), with markup (``<...>``), without a letter
  outside format placeholders (``%s``, ``%(name)s``, ``{0}``, ``$(ARG1)``, ``%1``), longer than ``--max-words``
  words or ``--max-chars`` characters on a side, or with a character-length ratio above 3 (pairs of 10+ chars);
- exact duplicate pairs are kept once. In training every distinct translation of an English string is kept; in
  valid / test only the one found in most packages (ties: the alphabetically first), so each test source has one
  reference (``--all-references`` keeps them all).

Splits are by a hash of the English side (every translation of one English string lands in the same split, so no
test source is seen in training): ``--valid-fraction`` and ``--test-fraction`` of the distinct English strings, the
rest training; each file is sorted by that hash, so the output does not depend on package order. It writes
``<out>/{train,valid,test}.{en,de}`` and ``<out>/SOURCES.json`` (packages with versions and SHA-256, counts).

This is software-interface text (menus, messages, help lines, game dialogue from Wesnoth and Freeciv): short
segments, many of them noun phrases. It is NOT the data of the papers (IWSLT15 TED talks, Multi30k image captions,
WMT15 news); results on it are not comparable to theirs.

Usage::

    python scripts/prepare_message_catalog_corpus.py --out data/message_catalogs_en_de --cache data/.debs
"""

from __future__ import annotations

import argparse
import gettext
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

PACKAGES = [
    # German language packs and "all languages" translation packages
    "libreoffice-l10n-de",
    "krita-l10n",
    "vlc-l10n",
    "wordpress-l10n",
    "cinnamon-l10n",
    "kdevelop-l10n",
    "kile-l10n",
    "libc-l10n",
    "libvirt-l10n",
    "e2fsprogs-l10n",
    "gnupg-l10n",
    "libosinfo-l10n",
    "aegisub-l10n",
    "libgphoto2-l10n",
    "libokteta-l10n",
    "libktorrent-l10n",
    "gdbm-l10n",
    "libgpg-error-l10n",
    # tool chains and system tools (diagnostics: long sentences)
    "gcc-12-locales",
    "git",
    "coreutils",
    "tar",
    "wget",
    "grep",
    "findutils",
    "diffutils",
    "apt",
    "dpkg",
    "aptitude-common",
    "gettext",
    "binutils-common",
    "libglib2.0-data",
    "libgtk-3-common",
    # desktop applications whose package holds their catalogs
    "gramps",
    "inkscape",
    "gimp-data",
    "gnucash-common",
    "evolution-common",
    "evolution-data-server-common",
    "gnumeric-common",
    "thunar-data",
    "gajim",
    "digikam-data",
    "kstars-data",
    "k3b-i18n",
    "okular",
    "kmail",
    "ktorrent-data",
    "gnome-control-center-data",
    "nautilus-data",
    "gnome-shell-common",
    "gedit-common",
    "rhythmbox-data",
    "shotwell-common",
    # games: dialogue and story text
    "freeciv-data",
    "wesnoth-1.16-data",
    *(
        f"wesnoth-1.16-{campaign}"
        for campaign in (
            "did",
            "dm",
            "dw",
            "ei",
            "httt",
            "l",
            "low",
            "nr",
            "sof",
            "sota",
            "sotbe",
            "thot",
            "trow",
            "tsg",
            "ttb",
            "utbs",
        )
    ),
]

_CATALOG = re.compile(r"(^|/)(de|de_DE)/LC_MESSAGES/[^/]+\.mo$|(^|[/-])de_DE\.mo$")
_PLACEHOLDER = re.compile(
    r"%[-+ #0]*\d*(?:\.\d+)?(?:hh|h|ll|l|L|z|j|t)?[diouxXeEfFgGcsp%]"  # printf
    r"|%\(\w+\)[-+ #0]*\d*(?:\.\d+)?[a-zA-Z]"  # python %(name)s
    r"|%\d+|\{[\w.]*\}|\$\(\w+\)|\$\{\w+\}|\$\w+\$"  # %1, {0} / {name}, $(ARG1), ${name}, $name$
)
_LETTER = re.compile(r"[^\W\d_]")
_MARKUP = re.compile(r"<[^<>]+>")


def strip_accelerators(text: str) -> str:
    """Remove keyboard accelerator markers: ``~x`` (LibreOffice), ``&x`` (Qt/KDE, ``&&`` is a literal ``&``), ``_x``.

    >>> strip_accelerators("Spei~chern"), strip_accelerators("&Datei && mehr"), strip_accelerators("Ö_ffnen")
    ('Speichern', 'Datei & mehr', 'Öffnen')
    >>> strip_accelerators("Tom &amp; Jerry"), strip_accelerators("file_name_x")
    ('Tom &amp; Jerry', 'file_name_x')
    """
    text = re.sub(r"~(?=\w)", "", text)
    text = re.sub(r"&(?![A-Za-z]+;|#\d+;)(?=[^\W\d_])", "", text)
    text = text.replace("&&", "&")
    if text.count("_") == 1:
        text = re.sub(r"_(?=[^\W\d_])", "", text)
    return text


def clean(text: str) -> str:
    """Accelerators removed, whitespace runs (newlines, tabs) turned into single spaces, ends stripped."""
    return " ".join(strip_accelerators(text).split())


def keep_pair(english: str, german: str, max_words: int, max_chars: int) -> bool:
    """Whether a cleaned pair looks like translated text (see the module docstring for the rules)."""
    if not english or not german or english == german:
        return False
    for side in (english, german):
        if _MARKUP.search(side) or not _LETTER.search(_PLACEHOLDER.sub("", side)):
            return False
        if len(side.split()) > max_words or len(side) > max_chars:
            return False
        if any(ord(c) < 32 for c in side):
            return False
    short, long = sorted((len(english), len(german)))
    return not (long >= 10 and long > 3 * short)


def catalog_pairs(path: Path) -> Iterator[tuple[str, str]]:
    """Raw ``(msgid, msgstr)`` pairs of a ``.mo`` file: no header, no plurals, message contexts dropped."""
    with open(path, "rb") as handle:
        translations = gettext.GNUTranslations(handle)
    for key, value in translations._catalog.items():  # noqa: SLF001 - the parsed catalog; no public accessor
        if not isinstance(key, str) or not key:
            continue  # plural forms are keyed (msgid, n); "" is the header
        yield key.split("\x04", 1)[-1], value


def download(package: str, cache: Path) -> Path | None:
    """The ``.deb`` of ``package`` in ``cache`` (downloaded with ``apt-get download`` if not there yet)."""
    found = sorted(cache.glob(f"{package}_*.deb"))
    if not found:
        result = subprocess.run(["apt-get", "download", package], cwd=cache, capture_output=True, text=True)
        found = sorted(cache.glob(f"{package}_*.deb"))
        if result.returncode != 0 or not found:
            print(f"  {package}: download failed: {result.stderr.strip()[-300:]}", file=sys.stderr)
            return None
    return found[-1]


def package_pairs(deb: Path) -> tuple[list[tuple[str, str]], int]:
    """Raw pairs of every German catalog in ``deb``, and the number of catalogs."""
    pairs: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["dpkg", "-x", str(deb), tmp], check=True)
        catalogs = sorted(p for p in Path(tmp).rglob("*.mo") if _CATALOG.search(p.relative_to(tmp).as_posix()))
        for catalog in catalogs:
            pairs.extend(catalog_pairs(catalog))
    return pairs, len(catalogs)


def split_of(english: str, valid_fraction: float, test_fraction: float) -> tuple[str, int]:
    """``("train" | "valid" | "test", hash)`` of a pair, from a hash of its English side."""
    value = int.from_bytes(hashlib.sha256(english.encode("utf-8")).digest()[:8], "big")
    position = value / 2**64
    if position < valid_fraction:
        return "valid", value
    if position < valid_fraction + test_fraction:
        return "test", value
    return "train", value


def main(argv: list[str] | None = None) -> None:
    """Download, extract, filter, split and write the corpus."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/message_catalogs_en_de"))
    parser.add_argument("--cache", type=Path, default=Path("data/.debs"), help="where the .deb files are kept")
    parser.add_argument("--packages", nargs="+", default=PACKAGES)
    parser.add_argument("--valid-fraction", type=float, default=0.02)
    parser.add_argument("--test-fraction", type=float, default=0.02)
    parser.add_argument("--max-words", type=int, default=60)
    parser.add_argument("--max-chars", type=int, default=400)
    parser.add_argument(
        "--all-references",
        action="store_true",
        help="keep every translation of an English string in valid/test (default: the most frequent one only)",
    )
    args = parser.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    start = time.time()
    sources, pairs, raw_count = [], set(), 0
    frequency: Counter[tuple[str, str]] = Counter()  # packages a pair occurs in
    for package in args.packages:
        deb = download(package, args.cache)
        if deb is None:
            continue
        raw, num_catalogs = package_pairs(deb)
        kept = {
            (e, g) for e, g in ((clean(e), clean(g)) for e, g in raw) if keep_pair(e, g, args.max_words, args.max_chars)
        }
        new = kept - pairs
        pairs |= kept
        frequency.update(kept)
        raw_count += len(raw)
        digest = hashlib.sha256(deb.read_bytes()).hexdigest()
        sources.append(
            {
                "package": package,
                "deb": deb.name,
                "sha256": digest,
                "catalogs": num_catalogs,
                "messages": len(raw),
                "kept": len(kept),
                "new": len(new),
            }
        )
        print(f"  {deb.name}: {num_catalogs} catalogs, {len(raw)} messages, {len(kept)} kept, {len(new)} new")
    splits: dict[str, list[tuple[int, str, str]]] = {"train": [], "valid": [], "test": []}
    best: dict[str, tuple[int, str]] = {}  # English -> (-frequency, German) of its most frequent translation
    for english, german in pairs:
        candidate = (-frequency[english, german], german)
        best[english] = min(best.get(english, candidate), candidate)
    for english, german in pairs:
        split, value = split_of(english, args.valid_fraction, args.test_fraction)
        if split != "train" and not args.all_references and best[english][1] != german:
            continue  # one reference per source in evaluation: the translation most packages agree on
        splits[split].append((value, english, german))
    args.out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split, rows in splits.items():
        rows.sort()
        for lang, column in (("en", 1), ("de", 2)):
            (args.out / f"{split}.{lang}").write_text("".join(r[column] + "\n" for r in rows), encoding="utf-8")
        counts[split] = {
            "pairs": len(rows),
            "words_en": sum(len(r[1].split()) for r in rows),
            "words_de": sum(len(r[2].split()) for r in rows),
        }
        print(f"{split}: {counts[split]}")
    summary = {
        "messages_read": raw_count,
        "distinct_pairs": len(pairs),
        "splits": counts,
        "packages": sources,
        "filters": {k: getattr(args, k) for k in ("valid_fraction", "test_fraction", "max_words", "max_chars")},
    }
    (args.out / "SOURCES.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False), encoding="utf-8")
    print(
        f"{len(pairs)} pairs from {raw_count} messages of {len(sources)} packages in {time.time() - start:.0f} s "
        f"-> {args.out}"
    )


if __name__ == "__main__":
    main()
