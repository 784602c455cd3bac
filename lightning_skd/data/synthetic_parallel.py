"""A deterministic toy language pair with reordering, written in the layout ``ParallelTextDataModule`` reads.

Source sentences come from a tiny English-like grammar::

    S  -> NP_subj VERB [NP_obj] [ADV]          NP -> DET [ADJ] NOUN

(3 to 8 words). The target is a word-by-word dictionary translation into made-up words with two reordering rules
of German / Japanese flavour: the adjective follows its noun (``the red cat`` -> ``da katzo roto``) and the verb
goes to the end of the sentence (subject, object, adverb, verb). Both rules depend on the word class only, so a
sequence-to-sequence model can learn the pair exactly from a few thousand sentences; the vocabulary has 44 source
words and 44 target words.
"""

from __future__ import annotations

import random
from pathlib import Path

__all__ = ["TOY_DICTIONARY", "toy_sentence_pair", "write_synthetic_parallel_corpus"]

_DETERMINERS = {"the": "da", "a": "ein", "every": "jed", "no": "kein"}
_ADJECTIVES = {
    "red": "roto",
    "big": "grosso",
    "small": "klino",
    "old": "alto",
    "young": "jungo",
    "happy": "frohu",
    "green": "gruno",
    "quiet": "stilo",
}
_NOUNS = {
    "cat": "katzo",
    "dog": "hundo",
    "bird": "vogu",
    "house": "hauso",
    "tree": "baumo",
    "child": "kindo",
    "teacher": "lehra",
    "car": "wagu",
    "river": "flussa",
    "apple": "apfu",
    "book": "bucho",
    "garden": "garto",
}
_VERBS = {
    "sees": "siehta",
    "likes": "magta",
    "finds": "findta",
    "follows": "folgta",
    "paints": "malta",
    "hears": "horta",
    "carries": "tragta",
    "visits": "besuchta",
}
_INTRANSITIVE = {"sleeps": "schlafta", "runs": "laufta", "sings": "singta", "waits": "warta"}
_ADVERBS = {"today": "heuta", "quickly": "schnella", "often": "ofta", "again": "wiedra"}

TOY_DICTIONARY: dict[str, str] = {
    **_DETERMINERS,
    **_ADJECTIVES,
    **_NOUNS,
    **_VERBS,
    **_INTRANSITIVE,
    **_ADVERBS,
}
"""Source word -> target word (44 entries)."""


def _noun_phrase(rng: random.Random) -> tuple[list[str], list[str]]:
    det, noun = rng.choice(list(_DETERMINERS)), rng.choice(list(_NOUNS))
    if rng.random() < 0.5:
        adj = rng.choice(list(_ADJECTIVES))
        return [det, adj, noun], [_DETERMINERS[det], _NOUNS[noun], _ADJECTIVES[adj]]  # adjective after the noun
    return [det, noun], [_DETERMINERS[det], _NOUNS[noun]]


def toy_sentence_pair(rng: random.Random) -> tuple[str, str]:
    """One source sentence and its translation.

    Example:
        >>> toy_sentence_pair(random.Random(3))
        ('a apple visits the quiet apple quickly', 'ein apfu da apfu stilo schnella besuchta')

    """
    subject_src, subject_tgt = _noun_phrase(rng)
    source, target = list(subject_src), list(subject_tgt)
    if rng.random() < 0.75:
        verb = rng.choice(list(_VERBS))
        object_src, object_tgt = _noun_phrase(rng)
        source += [verb, *object_src]
        target += object_tgt
        verb_tgt = _VERBS[verb]
    else:
        verb = rng.choice(list(_INTRANSITIVE))
        source.append(verb)
        verb_tgt = _INTRANSITIVE[verb]
    if rng.random() < 0.3:
        adverb = rng.choice(list(_ADVERBS))
        source.append(adverb)
        target.append(_ADVERBS[adverb])
    target.append(verb_tgt)  # verb-final
    return " ".join(source), " ".join(target)


def write_synthetic_parallel_corpus(
    folder: str | Path,
    num_train: int = 2000,
    num_valid: int = 200,
    num_test: int = 200,
    seed: int = 0,
    source_lang: str = "src",
    target_lang: str = "tgt",
    train_prefix: str = "train",
    val_prefix: str = "valid",
    test_prefix: str = "test",
) -> dict[str, tuple[Path, Path]]:
    """Write ``{train,valid,test}.{source_lang,target_lang}`` of the toy pair into ``folder``.

    The same arguments always give the same files. Validation and test sentences are drawn from the same grammar
    (a few may also occur in training, as in any natural corpus of short sentences).

    Args:
        folder: Output folder (created).
        num_train: Training pairs.
        num_valid: Validation pairs.
        num_test: Test pairs.
        seed: Seed of the sentence generator.
        source_lang: Suffix of the source files.
        target_lang: Suffix of the target files.
        train_prefix: File stem of the training split.
        val_prefix: File stem of the validation split.
        test_prefix: File stem of the test split.

    Returns:
        For each split name (``"train"``, ``"val"``, ``"test"``), the source and the target file.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     files = write_synthetic_parallel_corpus(tmp, num_train=3, num_valid=1, num_test=1)
        ...     print(files["train"][1].read_text().splitlines()[0])
        kein lehra stilo kein kindo malta

    """
    for name, value in (("num_train", num_train), ("num_valid", num_valid), ("num_test", num_test)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"write_synthetic_parallel_corpus: `{name}` must be an integer >= 1, got {value!r}")
    if source_lang == target_lang:
        raise ValueError(
            f"write_synthetic_parallel_corpus: `source_lang` and `target_lang` must differ, got {source_lang!r}"
        )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    files: dict[str, tuple[Path, Path]] = {}
    for split, prefix, count in (
        ("train", train_prefix, num_train),
        ("val", val_prefix, num_valid),
        ("test", test_prefix, num_test),
    ):
        pairs = [toy_sentence_pair(rng) for _ in range(count)]
        source_path, target_path = folder / f"{prefix}.{source_lang}", folder / f"{prefix}.{target_lang}"
        source_path.write_text("".join(s + "\n" for s, _ in pairs), encoding="utf-8")
        target_path.write_text("".join(t + "\n" for _, t in pairs), encoding="utf-8")
        files[split] = (source_path, target_path)
    return files
