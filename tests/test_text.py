"""Text front end: exact espeak output for fixed sentences, number normalisation, symbol table coverage,
unknown characters (warn + drop) and text with nothing to speak (clear error)."""
import warnings

import pytest

import text
from text import UnknownSymbolWarning, cleaners, numbers, symbols
from text.phonemize import espeak_backend, phonemize


def test_fixed_sentence_ipa():
    assert text.clean_text("in being comparatively modern.", ["english_cleaners2"]) == \
        "ɪn bˌiːɪŋ kəmpˈæɹətˌɪvli mˈɑːdɚn."
    assert text.clean_text("Dr. Smith paid $5.20 on the 21st, in 1984!", ["english_cleaners2"]) == \
        "dˈɑːktɚ smˈɪθ pˈeɪd fˈaɪv dˈɑːlɚz ænd twˈɛnti sˈɛnts ɔnðə twˈɛntifˈɜːst, ɪn nˈaɪntiːn ˈeɪɾifˈɔːɹ!"


def test_english_normalisation_before_phonemes():
    assert text.clean_text("Mr. Smith & Co. — 50% off at 3:05!", ["english_cleaners"]) == \
        "mister smith and company, fifty percent off at three oh five!"
    assert text.clean_text("Café naïve", ["transliteration_cleaners"]) == "cafe naive"
    assert text.clean_text("  Ünïcode   STAYS ", ["basic_cleaners"]) == "ünïcode stays"


@pytest.mark.parametrize("raw, words", [
    ("0", "zero"), ("7", "seven"), ("13", "thirteen"), ("40", "forty"), ("99", "ninety-nine"),
    ("100", "one hundred"), ("101", "one hundred one"), ("1,234,567",
                                                         "one million two hundred thirty-four thousand five hundred sixty-seven"),
    ("1st", "first"), ("2nd", "second"), ("3rd", "third"), ("12th", "twelfth"), ("21st", "twenty-first"),
    ("40th", "fortieth"), ("103rd", "one hundred third"),
    ("1984", "nineteen eighty-four"), ("1905", "nineteen oh five"), ("1900", "nineteen hundred"),
    ("2000", "two thousand"), ("2007", "two thousand seven"), ("2024", "twenty twenty-four"),
    ("3.14", "three point one four"), ("007", "zero zero seven"), ("12%", "twelve percent"),
    ("$1", "one dollar"), ("$5.20", "five dollars and twenty cents"), ("$0.05", "five cents"),
    ("£3", "three pounds"), ("€2.5 million", "two point five million euros"),
    ("3:00", "three o'clock"), ("10:45", "ten forty-five"),
])
def test_numbers(raw, words):
    assert numbers.normalize_numbers(raw) == words


def test_symbol_table_layout():
    assert symbols[0] == "_" and text.PAD_ID == 0 and text.BLANK_ID == 0
    assert len(set(symbols)) == len(symbols)
    for needed in "ˈˌː ,.!?;:'\"-" + "ɪəɚɹæʃθðŋʊɑɔɛʌᵻɾʒ":
        assert needed in text.SYMBOL_TO_ID, needed


def test_round_trip_ids_and_symbols():
    everything = "".join(symbols)
    assert text.sequence_to_text(text.cleaned_text_to_sequence(everything)) == everything
    phonemes = "ðə kwˈɪk bɹˈaʊn fˈɑːks, dʒˈʌmps!"
    ids = text.cleaned_text_to_sequence(phonemes)
    assert len(ids) == len(phonemes) and all(0 < i < len(symbols) for i in ids)
    assert text.sequence_to_text(ids) == phonemes
    with pytest.raises(ValueError, match="outside the symbol table"):
        text.sequence_to_text([len(symbols)])


@pytest.mark.parametrize("language, sentence", [
    ("en-us", "She measured the thin judge, singing: \"Uh-oh, why?\" (Television!)"),
    ("en-gb", "The quick brown fox jumps over the lazy dog."),
    ("fr-fr", "Bonjour, un vin blanc et du pain."),
    ("de", "Schöne Grüße aus München."),
    ("es", "¿Dónde está el niño pequeño?"),
])
def test_espeak_output_is_covered_by_the_symbol_table(language, sentence):
    phones = text.clean_text(sentence, ["multilingual_cleaners"], language)
    missing = {c for c in phones if c not in text.SYMBOL_TO_ID}
    assert not missing, f"{language}: {sorted(missing)} in {phones!r}"


def test_unknown_characters_are_dropped_with_a_warning():
    with pytest.warns(UnknownSymbolWarning, match="😀"):
        ids = text.text_to_sequence("hi 😀 there", ["basic_cleaners"])
    assert text.sequence_to_text(ids) == "hi  there"
    with pytest.warns(UnknownSymbolWarning, match="U\\+1F600"):
        cleaned = text.clean_text("Hello 😀 world.", ["english_cleaners2"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cleaned == text.clean_text("Hello world.", ["english_cleaners2"])
    with pytest.warns(UnknownSymbolWarning, match="#"):
        assert text.cleaned_text_to_sequence("a#b") == text.cleaned_text_to_sequence("ab")


@pytest.mark.parametrize("raw", ["", "   ", "😀", "!!! ...", "\n\t"])
def test_text_with_nothing_to_speak_raises(raw):
    with pytest.raises(ValueError, match="nothing to speak"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UnknownSymbolWarning)
        text.text_to_sequence(raw, ["english_cleaners2"])


def test_cleaned_text_without_symbols_raises():
    with pytest.raises(ValueError, match="nothing to speak"):
        text.cleaned_text_to_sequence(" , . ")


def test_batch_cleaning_equals_one_by_one_and_keeps_order():
    texts = ["Hello there.", "", "!!!", "In 1984, it cost $3.", "ok"]
    batch = text.clean_texts(texts, ["english_cleaners2"], njobs=1)
    assert len(batch) == len(texts)
    assert batch[1] == "" and batch[2] == "!!!"
    for raw, cleaned in zip(texts, batch):
        assert text.clean_texts([raw], ["english_cleaners2"])[0] == cleaned


def test_batch_returns_warnings_per_text():
    out, notes = text.clean_texts(["fine", "bad 🎉 one", "ok"], "english_cleaners2", return_warnings=True)
    assert [bool(n) for n in notes] == [False, True, False]
    assert "🎉" in notes[1][0]
    assert out[1] == text.clean_texts(["bad one"], "english_cleaners2")[0]


def test_phonemizer_backend_is_created_once_per_language():
    assert espeak_backend("en-us") is espeak_backend("en-us")
    assert phonemize(["a  b\nc"], "en-us") == phonemize(["a b c"], "en-us")
    with pytest.raises(ValueError, match="language"):
        espeak_backend("xx-not-a-language")


def test_unknown_cleaner_is_named():
    with pytest.raises(ValueError, match="english_cleaners3.*available"):
        text.clean_text("hi", ["english_cleaners3"])
    assert set(cleaners.CLEANERS) >= {"basic_cleaners", "transliteration_cleaners", "english_cleaners2"}


def test_parallel_phonemizing_keeps_order():
    """njobs > 1 (worker processes, used by preprocess.py on big datasets) gives the same list."""
    texts = [f"item {numbers.cardinal(i)}{'!' if i % 7 == 0 else '.'}" for i in range(520)]
    texts[5], texts[300] = "", "?!"
    assert phonemize(texts, "en-us", njobs=2) == phonemize(texts, "en-us", njobs=1)
