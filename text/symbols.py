"""The symbol table: id 0 is the pad / blank symbol "_".

The order is part of every trained checkpoint (ids index the embedding table): only ever append.
Covers ASCII text (for the non-phonemizing cleaners), digits (tone numbers of espeak's tonal
languages), and the IPA letters, stress / length marks and combining diacritics that espeak-ng
produces for English and the other common languages.
"""
from types import MappingProxyType

PAD = "_"
PUNCTUATION = ';:,.!?¡¿—…"«»“”()[]{}-\' '
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
DIGITS = "0123456789"
# Non-ASCII IPA letters (ASCII letters such as a, b, d, ... are already in LETTERS).
IPA_VOWELS = "ɑɐɒæɔəɘɚɛɜɝɞɨɪʉʊʌɤɯɵøœɶʏᵻᵿäëïöü"
IPA_CONSONANTS = ("βɓçɕɗɖðɟʄɡɠɢʛɦɧħɥʜʝɭɬɫɮʟɱɰŋɳɲɴɸθɹɺɾɻʀʁɽʂʃʈʧʤʦʣʨʥʋⱱɣʍχʎʑʐʒʔʡʕʢ"
                  "ǀǁǂǃʘ")
IPA_MARKS = "ˈˌːˑʼʴʰʱʲʷˠˤ˞↓↑→↗↘"
# Combining diacritics: nasal, syllabic, non-syllabic, voiceless, dental, raised, lowered, no release.
IPA_COMBINING = "\u0303\u0329\u032f\u0325\u030a\u032a\u031d\u031e\u031a"

symbols = [PAD] + list(PUNCTUATION) + list(LETTERS) + list(DIGITS) + list(IPA_VOWELS) \
    + list(IPA_CONSONANTS) + list(IPA_MARKS) + list(IPA_COMBINING)

if len(set(symbols)) != len(symbols):  # guard the table against accidental duplicate entries
    raise RuntimeError("duplicate entries in text.symbols")

SYMBOL_TO_ID = MappingProxyType({s: i for i, s in enumerate(symbols)})
PAD_ID = 0
BLANK_ID = 0  # intersperse id used when data.add_blank is true
SPACE_ID = SYMBOL_TO_ID[" "]
