import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from tests.helpers.scripts import load_script

prepare = load_script("prepare_message_catalog_corpus")


def write_mo(path: Path, messages: dict[str, str]) -> None:
    """Write a GNU .mo file (little endian, no hash table); keys may hold \\x04 contexts and \\x00 plurals."""
    keys = sorted(messages)
    ids = [k.encode("utf-8") for k in keys]
    strs = [messages[k].encode("utf-8") for k in keys]
    header_size = 7 * 4
    table_size = len(keys) * 8
    offset = header_size + 2 * table_size
    id_table, str_table, blob = [], [], b""
    for data in ids:
        id_table.append((len(data), offset + len(blob)))
        blob += data + b"\0"
    for data in strs:
        str_table.append((len(data), offset + len(blob)))
        blob += data + b"\0"
    out = struct.pack("<7I", 0x950412DE, 0, len(keys), header_size, header_size + table_size, 0, 0)
    out += b"".join(struct.pack("<2I", *entry) for entry in id_table)
    out += b"".join(struct.pack("<2I", *entry) for entry in str_table)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(out + blob)


MESSAGES = {
    "": "Content-Type: text/plain; charset=UTF-8\nPlural-Forms: nplurals=2; plural=n != 1;\n",
    "Save the ~document": "Das ~Dokument speichern",
    "MENU\x04&Open file": "Datei ö&ffnen",
    "One file\x00%d files": "Eine Datei\x00%d Dateien",
    "%s: %d": "%s: %d",
    "<b>Bold</b> text": "<b>Fetter</b> Text",
    "OK": "OK",
    "The\nquick _fox": "Der\tschnelle _Fuchs",
    "Hello world": "Hallo Welt",
}


def test_catalog_pairs_drops_header_and_plurals_and_contexts(tmp_path):
    write_mo(tmp_path / "x.mo", MESSAGES)
    pairs = dict(prepare.catalog_pairs(tmp_path / "x.mo"))
    assert "" not in pairs and "One file" not in pairs
    assert pairs["&Open file"] == "Datei ö&ffnen"  # context dropped, message kept


def test_clean_and_keep_pair_rules():
    assert prepare.clean("Save the ~document") == "Save the document"
    assert prepare.clean("Datei ö&ffnen") == "Datei öffnen"
    assert prepare.clean("Der\tschnelle _Fuchs\n") == "Der schnelle Fuchs"
    assert prepare.keep_pair("Hello world", "Hallo Welt", 60, 400)
    assert not prepare.keep_pair("%s: %d", "%s - %d", 60, 400)  # format placeholders only
    assert not prepare.keep_pair("OK", "OK", 60, 400)  # untranslated copy
    assert not prepare.keep_pair("<b>Bold</b> text", "<b>Fetter</b> Text", 60, 400)
    assert not prepare.keep_pair("word " * 61, "Wort " * 61, 60, 400)
    assert not prepare.keep_pair("A short one", "Ein sehr sehr sehr sehr sehr sehr langer Satz", 60, 400)


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb to build a package")
def test_prepare_message_catalog_corpus_end_to_end(tmp_path):
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        "Package: fake-l10n\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@example.org>\nDescription: test\n"
    )
    many = {f"Message number {i} is here": f"Nachricht Nummer {i} ist hier" for i in range(200)}
    many["Track"] = "Titel"  # a second catalog translates it differently (below)
    write_mo(root / "usr/share/locale/de/LC_MESSAGES/fake.mo", {**MESSAGES, **many})
    write_mo(root / "usr/share/locale/fr/LC_MESSAGES/fake.mo", {"Hello world": "Bonjour le monde"})
    write_mo(root / "usr/share/wordpress/languages/admin-de_DE.mo", {"Track": "Spur"})
    cache = tmp_path / "cache"
    cache.mkdir()
    subprocess.run(
        ["dpkg-deb", "--build", str(root), str(cache / "fake-l10n_1.0_all.deb")], check=True, capture_output=True
    )
    out = tmp_path / "out"
    prepare.main(["--cache", str(cache), "--out", str(out), "--packages", "fake-l10n", "--valid-fraction", "0.1"])
    splits = {s: (out / f"{s}.en").read_text().splitlines() for s in ("train", "valid", "test")}
    german = {s: (out / f"{s}.de").read_text().splitlines() for s in ("train", "valid", "test")}
    pairs = {p for s in splits for p in zip(splits[s], german[s], strict=True)}
    expected = {(k, v) for k, v in many.items()} | {
        ("Save the document", "Das Dokument speichern"),
        ("Open file", "Datei öffnen"),
        ("The quick fox", "Der schnelle Fuchs"),
        ("Hello world", "Hallo Welt"),
    }
    split, _ = prepare.split_of("Track", 0.1, 0.02)
    assert split == "valid"  # so only one translation is kept: the most frequent, here (a tie) the first, "Spur"
    expected.remove(("Track", "Titel"))
    expected.add(("Track", "Spur"))
    assert pairs == expected  # no French, no plural, no placeholders-only, no markup, no copy
    assert 5 <= len(splits["valid"]) <= 45 and len(splits["test"]) <= 20
    first = {s: (out / f"{s}.en").read_bytes() for s in splits}
    prepare.main(["--cache", str(cache), "--out", str(out), "--packages", "fake-l10n", "--valid-fraction", "0.1"])
    assert first == {s: (out / f"{s}.en").read_bytes() for s in splits}  # deterministic
