"""How the TextGrids beside this file were made (run once; the tests read the files, not this script).

    python tests/data/textgrids/make_textgrids.py

Montreal Forced Aligner does not install offline here, so these are written in MFA's format instead of by MFA:
a long-format TextGrid with an interval tier `words` (lower-case words without punctuation, empty intervals
for pauses) and a tier `phones` (MFA's IPA phone set, as its english_mfa model writes), their times from the
shipped voice's own monotonic alignment of each recording (speaker ljspeech). Each word's phones are espeak's
phonemes of the word said alone, split into phones (a length mark joins its vowel); a pause of at least
MIN_PAUSE seconds between words becomes an empty interval.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT))

import text  # noqa: E402
from audio import load_wav  # noqa: E402
from data_utils import compute_mel, read_filelist, trim_to_frames  # noqa: E402
from textgrid_durations import match_words, model_words, phonemize_words, sounding  # noqa: E402
from training.voice_file import DEFAULT_VOICE, load_voice  # noqa: E402

MIN_PAUSE = 0.05


def phones_of(phonemes: str):
    """espeak IPA of one word -> phones: each sounding character, a length mark joined to its vowel."""
    return re.findall(r".ː?", "".join(c for c in phonemes if sounding(c)))


def main() -> None:
    model, hps = load_voice(DEFAULT_VOICE)
    d = hps.data
    fps = d.sampling_rate / d.hop_length
    speaker = torch.tensor([d.speaker_names.index("ljspeech")])
    for utt in read_filelist(ROOT / "tests" / "data" / "metadata.csv"):
        wav = trim_to_frames(torch.from_numpy(load_wav(utt.wav_path, d.sampling_rate)), d.hop_length)
        mel = compute_mel(wav, d).unsqueeze(0)
        cleaned = text.clean_text(utt.text, d.text_cleaners, d.language)
        ids = text.text_to_ids(cleaned, d, cleaned=True)
        durations = model.acoustic.align(torch.tensor([ids]), torch.tensor([len(ids)]), mel,
                                         torch.tensor([mel.size(2)]), speaker)[0].numpy()
        ends = np.cumsum(durations) / fps
        chars, pieces = model_words(cleaned)
        char_span = [(ends[2 * k], ends[2 * k + 1]) for k in range(len(chars))]  # (start, end) without blanks
        words = re.findall(r"[a-z']+", utt.text.lower())
        said = phonemize_words(words, d.text_cleaners, d.language)
        entries_w, entries_p = [], []
        for in_model, grid_words in match_words(["".join(chars[a:b]) for a, b in pieces], words, said):
            voiced = [k for p in in_model for k in range(*pieces[p]) if sounding(chars[k])]
            start, end = char_span[voiced[0]][0], char_span[voiced[-1]][1]
            weights = np.array([len(phones_of(said[words[j]])) for j in grid_words], dtype=float)
            bounds = start + (end - start) * np.concatenate([[0], np.cumsum(weights) / weights.sum()])
            for j, (a, b) in zip(grid_words, zip(bounds[:-1], bounds[1:])):
                entries_w.append((round(a, 3), round(b, 3), words[j]))
                phones = phones_of(said[words[j]])
                edges = np.linspace(a, b, len(phones) + 1)
                entries_p += [(round(x, 3), round(y, 3), p) for x, y, p in zip(edges[:-1], edges[1:], phones)]
        close_short_gaps(entries_w, entries_p)
        write_long_textgrid(HERE / f"{Path(utt.wav_path).stem}.TextGrid", len(wav) / d.sampling_rate,
                            {"words": entries_w, "phones": entries_p})


def close_short_gaps(words, phones) -> None:
    """A gap of under MIN_PAUSE between words is no pause: the word (and its last phone) ends where the next
    begins."""
    for i in range(len(words) - 1):
        if 0 < words[i + 1][0] - words[i][1] < MIN_PAUSE:
            k = next(k for k, p in enumerate(phones) if p[1] == words[i][1])
            phones[k] = (phones[k][0], words[i + 1][0], phones[k][2])
            words[i] = (words[i][0], words[i + 1][0], words[i][2])


def write_long_textgrid(path: Path, end: float, tiers) -> None:
    from praatio import textgrid

    grid = textgrid.Textgrid()
    for name, entries in tiers.items():
        grid.addTier(textgrid.IntervalTier(name, entries, 0.0, end))
    grid.save(str(path), format="long_textgrid", includeBlankSpaces=True)


if __name__ == "__main__":
    main()
