"""Filelists, the text+mel dataset, batch collation and length-bucketed distributed batching.

Filelist formats (one utterance per line, fields separated by "|", UTF-8):
  * LJSpeech `metadata.csv`:   id|text|normalized_text  -> <folder of the csv>/wavs/<id>.wav; the
    normalized text (or the text when it is empty) is raw and always goes through the cleaners;
  * VITS:                      path/to/clip.wav|text
  * VITS multi-speaker:        path/to/clip.wav|speaker_id|text
A relative wav path is looked up next to the filelist first, then relative to the working directory
(VITS convention). `preprocess.py` writes absolute paths with cleaned (phonemized) text.
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import soundfile as sf
import torch
import torch.distributed as dist

import text as text_frontend
from atomic import atomic_write
from config import MEL_KEYS
from audio import AudioError, load_wav
from mel_processing import LOG_MEL_FLOOR, mel_from_config
from prosody import N_FEATURES as PROSODY_FEATURES, frame_prosody

logger = logging.getLogger(__name__)
PathLike = Union[str, Path]
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".opus", ".aif", ".aiff", ".au", ".w64")


class FilelistError(ValueError):
    """A filelist line cannot be parsed; the message names the file and the line number."""


@dataclass(frozen=True)
class Utterance:
    """One filelist entry. `raw_text`: the text still needs the cleaners (LJSpeech metadata)."""
    wav_path: str
    text: str
    speaker: int = 0
    raw_text: bool = False
    where: str = ""  # "file:line", for messages


def _resolve_wav(field: str, base_dir: Path) -> str:
    path = Path(field).expanduser()
    if not path.is_absolute() and (base_dir / path).exists():
        path = base_dir / path
    return str(path.resolve())


def parse_filelist_line(line: str, base_dir: Path, where: str) -> Utterance:
    """Parse one non-empty line (see the module docstring); FilelistError naming `where` if malformed."""
    fields = line.split("|")
    if len(fields) == 2:
        wav, text = fields
        speaker, raw = "0", False
    elif len(fields) == 3 and fields[0].strip().lower().endswith(AUDIO_EXTENSIONS):
        wav, speaker, text = fields
        raw = False
    elif len(fields) == 3:  # LJSpeech metadata.csv: id|text|normalized_text
        uid, plain, normalized = fields
        if not uid.strip():
            raise FilelistError(f"{where}: empty clip id in LJSpeech-style line {line[:80]!r}")
        wav, text, speaker, raw = str(base_dir / "wavs" / f"{uid.strip()}.wav"), normalized.strip() or plain, "0", True
    else:
        raise FilelistError(
            f"{where}: expected 'wav|text', 'wav|speaker|text' or LJSpeech 'id|text|normalized' "
            f"(2 or 3 fields separated by '|'), got {len(fields)} field(s): {line[:80]!r}")
    if not wav.strip():
        raise FilelistError(f"{where}: empty wav path in line {line[:80]!r}")
    if not text.strip():
        raise FilelistError(f"{where}: empty text for {wav.strip()!r}")
    try:
        speaker_id = int(speaker)
    except ValueError:
        raise FilelistError(f"{where}: speaker id must be a non-negative integer, got {speaker!r}") from None
    if speaker_id < 0:
        raise FilelistError(f"{where}: speaker id must be a non-negative integer, got {speaker_id}")
    return Utterance(_resolve_wav(wav.strip(), base_dir), text.strip(), speaker_id, raw, where)


def read_filelist(path: PathLike, errors: Optional[List[Tuple[str, str]]] = None) -> List[Utterance]:
    """Parse a filelist; blank lines are skipped.

    A malformed line raises FilelistError ("file:line: what is wrong"), unless `errors` is a list:
    then (where, message) is appended to it and the line skipped (used by preprocess.py).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"filelist not found: {path}")
    base_dir = path.resolve().parent
    utterances = []
    with open(path, encoding="utf-8-sig") as f:  # -sig: tolerate a byte-order mark
        for lineno, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            try:
                utterances.append(parse_filelist_line(line, base_dir, f"{path}:{lineno}"))
            except FilelistError as e:
                if errors is None:
                    raise
                errors.append((f"{path}:{lineno}", str(e)))
    return utterances


def trim_to_frames(wav: torch.Tensor, hop_length: int) -> torch.Tensor:
    """(T,) -> (frames * hop,) with frames = T // hop, so that wav and mel lengths match exactly."""
    return wav[: (wav.size(-1) // hop_length) * hop_length]


def compute_mel(wav: torch.Tensor, data_cfg) -> torch.Tensor:
    """wav (T,) already trimmed -> log-mel (n_mels, T // hop)."""
    return mel_from_config(wav.unsqueeze(0), data_cfg).squeeze(0)


def mel_cache_path(cache_dir: PathLike, wav_path: PathLike, data_cfg, kind: str = "mel") -> Path:
    """Cache file for a clip's mel (or another per-frame feature `kind`, e.g. prosody). The folder name encodes
    the mel parameters (a config change never reads stale features); the file name adds a hash of the full
    path (clips that share a file name in different folders, as in multi-speaker corpora, do not collide)."""
    params = tuple(getattr(data_cfg, key) for key in MEL_KEYS)
    key = hashlib.sha1(repr(params).encode()).hexdigest()[:10]
    path_hash = hashlib.sha1(str(Path(wav_path).resolve()).encode()).hexdigest()[:8]
    return Path(cache_dir) / f"{kind}-{key}" / f"{Path(wav_path).stem}-{path_hash}.npy"


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    """Write atomically: concurrent workers/ranks never read a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        np.save(f, array)


def cached_array(cache: Optional[Path], shape: Tuple[int, ...], compute: Callable[[], np.ndarray]) -> np.ndarray:
    """A clip's feature array of `shape`: read from `cache` when it holds that shape, else compute() (float32)
    and written there atomically (cache None: computed every time)."""
    if cache is not None and cache.is_file():
        array = np.load(cache)
        if array.shape == tuple(shape):
            return array
    array = compute().astype(np.float32)
    if cache is not None:
        save_npy_atomic(cache, array)
    return array


def _log_excluded(kind: str, excluded: List[Tuple[str, str]], total: int) -> None:
    if excluded:
        examples = "; ".join(f"{p}: {why}" for p, why in excluded[:5])
        more = f" (and {len(excluded) - 5} more)" if len(excluded) > 5 else ""
        logger.warning("%s: skipped %d of %d utterances: %s%s", kind, len(excluded), total, examples, more)


def clip_file(folder: PathLike, wav_path: PathLike) -> Path:
    """<folder>/<wav stem>.npy: where a clip's per-clip array lives (data.durations_dir, data.vocoder_mel_dir)."""
    return Path(folder) / f"{Path(wav_path).stem}.npy"


def duration_sum_tolerance(frames: int) -> int:
    """Largest |sum(durations) - mel frames| accepted from an external aligner: 10 % of the clip, at
    least 2 frames (aligners often round a frame or two differently; more means the wrong clip/config)."""
    return max(2, int(0.1 * frames))


class TextMelLoader(torch.utils.data.Dataset):
    """Text ids + log-mel + waveform for each filelist entry.

    Clips that cannot be used (missing, unreadable, outside data.min/max_audio_seconds, text with
    nothing speakable, missing or mis-sized durations, or durations whose sum is far from the clip's mel length, when
    data.durations_dir is set) are skipped when the dataset is built and reported in one log warning, so a
    bad clip never stops an epoch. A clip at another sample rate is resampled with soxr when
    data.resample is true and refused (AudioError) otherwise.

    Item: dict(text (T_text,) long, mel (n_mels, T_mel) float log-mel, wav (1, T_mel * hop) float,
               speaker int, durations (T_text,) long or None, path str; and vocoder_mel (n_mels, T_mel)
               when data.vocoder_mel_dir is set).
    `lengths[i]` is the number of mel frames of item i (for DistributedBucketSampler).
    """

    def __init__(self, filelist_path: PathLike, hps):
        self.hps = hps
        d = hps.data
        utterances = read_filelist(filelist_path)
        if not utterances:
            raise ValueError(f"filelist {filelist_path} has no utterances")
        total = len(utterances)
        ids, excluded = self._text_ids(utterances)
        self.items: List[Tuple[Utterance, List[int]]] = []
        self.lengths: List[int] = []
        wrong_rate = []
        for utt, seq in zip(utterances, ids):
            if seq is None:
                continue
            try:
                info = sf.info(utt.wav_path)
            except Exception as e:
                reason = "file not found" if not os.path.exists(utt.wav_path) else f"unreadable ({e})"
                excluded.append((utt.wav_path, reason))
                continue
            seconds = info.frames / info.samplerate
            if not d.min_audio_seconds <= seconds <= d.max_audio_seconds:
                excluded.append((utt.wav_path, f"{seconds:.2f} s is outside data.min/max_audio_seconds "
                                               f"[{d.min_audio_seconds}, {d.max_audio_seconds}]"))
                continue
            if info.samplerate != d.sampling_rate and not d.resample:
                wrong_rate.append(f"{utt.wav_path} ({info.samplerate} Hz)")
            frames = int(info.frames * d.sampling_rate / info.samplerate) // d.hop_length
            problem = (self._durations_problem(utt.wav_path, len(seq), frames)
                       or self._vocoder_mel_problem(utt.wav_path, frames))
            if problem:
                excluded.append((utt.wav_path, problem))
                continue
            if d.n_speakers > 1 and utt.speaker >= d.n_speakers:
                raise ValueError(f"{utt.where}: speaker id {utt.speaker} >= data.n_speakers ({d.n_speakers})")
            self.items.append((utt, seq))
            self.lengths.append(frames)
        if wrong_rate:
            raise AudioError(f"{len(wrong_rate)} clip(s) are not at data.sampling_rate {d.sampling_rate} Hz and "
                             f"data.resample is false, e.g. {', '.join(wrong_rate[:3])}; resample the "
                             f"dataset or set data.resample to true")
        _log_excluded(f"TextMelLoader({filelist_path})", excluded, total)
        if not self.items:
            raise ValueError(f"no usable utterance in {filelist_path} ({total} lines, all skipped; see the "
                             f"warning above)")
        self.paths = [utt.wav_path for utt, _ in self.items]

    def _text_ids(self, utterances: Sequence[Utterance]) -> Tuple[List[Optional[List[int]]], List[Tuple[str, str]]]:
        """Symbol ids per utterance (None: nothing speakable), cleaning raw text in one batch."""
        d = self.hps.data
        texts = [u.text for u in utterances]
        todo = [i for i, u in enumerate(utterances) if u.raw_text or not d.cleaned_text]
        if todo:
            cleaned, notes = text_frontend.clean_texts([texts[i] for i in todo], d.text_cleaners, d.language,
                                                       return_warnings=True)
            for i, c, n in zip(todo, cleaned, notes):
                texts[i] = c
                if n:
                    logger.warning("%s: %s", utterances[i].where, "; ".join(n))
        ids: List[Optional[List[int]]] = []
        excluded = []
        for utt, t in zip(utterances, texts):
            try:
                ids.append(text_frontend.text_to_ids(t, d, cleaned=True))
            except ValueError as e:
                excluded.append((utt.wav_path, str(e)))
                ids.append(None)
        return ids, excluded

    def _durations_path(self, wav_path: str) -> Path:
        return clip_file(self.hps.data.durations_dir, wav_path)

    def _durations_problem(self, wav_path: str, n_tokens: int, frames: int) -> Optional[str]:
        """Why the external durations of a clip are unusable (None when fine or not configured).

        A sum a few frames off the clip's `frames` mel frames is fine (aligners round differently; the
        model reconciles it, see flow_matching.reconcile_durations); a sum off by more than
        duration_sum_tolerance(frames) means the durations belong to another clip or config.
        """
        if not self.hps.data.durations_dir:
            return None
        path = self._durations_path(wav_path)
        if not path.is_file():
            return f"durations file {path} is missing (data.durations_dir is set)"
        dur = np.load(path).reshape(-1)
        if dur.size != n_tokens:
            return (f"durations file {path} has {dur.size} entries but the text has {n_tokens} tokens "
                    f"(data.add_blank={self.hps.data.add_blank})")
        if (dur < 0).any():
            return f"durations file {path} has negative durations"
        total = int(dur.sum())
        if abs(total - frames) > duration_sum_tolerance(frames):
            return (f"durations file {path} sums to {total} frames but the clip has {frames} mel frames "
                    f"(more than {duration_sum_tolerance(frames)} off; re-run the aligner with this "
                    f"config's hop_length/sampling_rate)")
        return None

    def _vocoder_mel_path(self, wav_path: str) -> Path:
        return clip_file(self.hps.data.vocoder_mel_dir, wav_path)

    def _vocoder_mel_problem(self, wav_path: str, frames: int) -> Optional[str]:
        """Why the vocoder's mel of a clip is unusable (None when fine or data.vocoder_mel_dir is unset)."""
        if not self.hps.data.vocoder_mel_dir:
            return None
        path = self._vocoder_mel_path(wav_path)
        if not path.is_file():
            return f"vocoder mel {path} is missing (data.vocoder_mel_dir is set)"
        shape = np.load(path, mmap_mode="r").shape
        if shape != (self.hps.data.n_mel_channels, frames):
            return (f"vocoder mel {path} has shape {shape}, not ({self.hps.data.n_mel_channels}, {frames}) like "
                    f"the clip's mel; make it again with teacher_forced_mels.py and this config")
        return None

    def __len__(self) -> int:
        return len(self.items)

    def load_audio_and_mel(self, wav_path: str) -> Tuple[torch.Tensor, torch.Tensor]:
        """-> wav (T_mel * hop,) float, mel (n_mels, T_mel); uses the mel cache when data.cache_dir is set."""
        d = self.hps.data
        wav = load_wav(wav_path, d.sampling_rate, d.resample)
        wav = trim_to_frames(torch.from_numpy(wav), d.hop_length)
        frames = wav.size(0) // d.hop_length
        if frames == 0:
            raise AudioError(f"{wav_path} is shorter than one hop ({d.hop_length} samples)")
        cache = mel_cache_path(d.cache_dir, wav_path, d) if d.cache_dir else None
        mel = cached_array(cache, (d.n_mel_channels, frames), lambda: compute_mel(wav, d).numpy())
        return wav, torch.from_numpy(mel)

    def load_prosody(self, wav_path: str, wav: torch.Tensor) -> torch.Tensor:
        """The clip's frame prosody (3, T_mel) (prosody.frame_prosody of wav (T_mel * hop,)), cached beside its
        mel when data.cache_dir is set (YIN costs about 20 ms per second of audio)."""
        d = self.hps.data
        cache = mel_cache_path(d.cache_dir, wav_path, d, kind="prosody") if d.cache_dir else None
        return torch.from_numpy(cached_array(cache, (PROSODY_FEATURES, wav.size(0) // d.hop_length),
                                             lambda: frame_prosody(wav.numpy(), d.sampling_rate, d.hop_length)))

    def load_durations(self, wav_path: str, n_tokens: int) -> Optional[torch.Tensor]:
        """External aligner durations from data.durations_dir/<wav stem>.npy: (T_text,) long.

        Their sum may differ from T_mel by a few frames (checked when the dataset is built); the model
        makes them sum to T_mel (flow_matching.reconcile_durations), so nothing here raises mid-epoch
        for that.
        """
        d = self.hps.data
        if not d.durations_dir:
            return None
        path = self._durations_path(wav_path)
        dur = torch.from_numpy(np.load(path)).long().flatten()
        if dur.numel() != n_tokens:  # checked at build time: only a file rewritten since then gets here
            raise ValueError(f"durations {path} have {dur.numel()} tokens but the text has {n_tokens} tokens "
                             f"(data.add_blank={d.add_blank}); the file changed after the dataset was built; "
                             f"re-run the aligner with this config")
        return dur

    def __getitem__(self, index: int) -> Dict:
        utt, seq = self.items[index]
        wav, mel = self.load_audio_and_mel(utt.wav_path)
        item = {
            "text": torch.tensor(seq, dtype=torch.long),
            "mel": mel.float(),
            "wav": wav.unsqueeze(0),
            "speaker": utt.speaker if self.hps.data.n_speakers > 1 else 0,
            "durations": self.load_durations(utt.wav_path, len(seq)),
            "path": utt.wav_path,
        }
        if self.hps.model.prosody_conditioning:
            item["prosody"] = self.load_prosody(utt.wav_path, wav)
        if self.hps.data.vocoder_mel_dir:
            item["vocoder_mel"] = torch.from_numpy(np.load(self._vocoder_mel_path(utt.wav_path))).float()
        return item


class TextMelCollate:
    """List of TextMelLoader items -> padded batch dict (items keep their order; nothing in the
    models needs length-sorted batches):

      text (B, T_text) long, text_lengths (B,) long, mel (B, n_mels, T_mel) float (log-mel, not
      normalized, padded with LOG_MEL_FLOOR, the log-mel of silence: 0 would be a loud frame to a
      vocoder fed mel slices that reach into the padding), mel_lengths (B,) long, wav (B, 1, T_mel * hop) float, wav_lengths (B,)
      long, speakers (B,) long, durations (B, T_text) long or None (None unless every item has
      durations), paths list[str]; vocoder_mel (B, n_mels, T_mel) when the items have it; prosody (B, 3, T_mel)
      (zero padded) when they have it.
    """

    def __call__(self, batch: Sequence[Dict]) -> Dict:
        if not batch:
            raise ValueError("TextMelCollate got an empty batch")
        text_lengths = torch.tensor([b["text"].size(0) for b in batch], dtype=torch.long)
        mel_lengths = torch.tensor([b["mel"].size(1) for b in batch], dtype=torch.long)
        wav_lengths = torch.tensor([b["wav"].size(1) for b in batch], dtype=torch.long)
        n_mels = batch[0]["mel"].size(0)
        texts = torch.zeros(len(batch), int(text_lengths.max()), dtype=torch.long)
        mels = torch.full((len(batch), n_mels, int(mel_lengths.max())), LOG_MEL_FLOOR)
        wavs = torch.zeros(len(batch), 1, int(wav_lengths.max()))
        with_durations = all(b["durations"] is not None for b in batch)
        durations = torch.zeros_like(texts) if with_durations else None
        for i, b in enumerate(batch):
            texts[i, : text_lengths[i]] = b["text"]
            mels[i, :, : mel_lengths[i]] = b["mel"]
            wavs[i, :, : wav_lengths[i]] = b["wav"]
            if durations is not None:
                durations[i, : text_lengths[i]] = b["durations"]
        out = {
            "text": texts, "text_lengths": text_lengths, "mel": mels, "mel_lengths": mel_lengths,
            "wav": wavs, "wav_lengths": wav_lengths,
            "speakers": torch.tensor([int(b["speaker"]) for b in batch], dtype=torch.long),
            "durations": durations, "paths": [b["path"] for b in batch],
        }
        if "prosody" in batch[0]:
            out["prosody"] = torch.zeros(len(batch), batch[0]["prosody"].size(0), mels.size(2))
            for i, b in enumerate(batch):
                out["prosody"][i, :, : mel_lengths[i]] = b["prosody"]
        if "vocoder_mel" in batch[0]:
            out["vocoder_mel"] = torch.full_like(mels, LOG_MEL_FLOOR)
            for i, b in enumerate(batch):
                out["vocoder_mel"][i, :, : mel_lengths[i]] = b["vocoder_mel"]
        return out


def length_boundaries(lengths: Sequence[int], num_buckets: int = 8) -> List[int]:
    """Bucket boundaries at length quantiles that contain every length: [min - 1, q1, ..., max]."""
    if not lengths:
        raise ValueError("length_boundaries needs at least one length")
    qs = np.quantile(np.asarray(lengths), np.linspace(0, 1, num_buckets + 1)[1:])
    bounds = sorted({int(math.ceil(q)) for q in qs} | {int(max(lengths))})
    return [int(min(lengths)) - 1] + bounds


class DistributedBucketSampler(torch.utils.data.Sampler):
    """Batch sampler (use as DataLoader(batch_sampler=...)) that groups clips of similar length.

    Bucket i holds the clips with boundaries[i] < length <= boundaries[i + 1] (length = mel frames,
    from `dataset.lengths`). Clips outside all buckets are not used, and are reported in a log
    warning rather than dropped silently; empty buckets are skipped. Each bucket is shuffled (seeded
    by seed + epoch, see set_epoch) and filled to whole batches by repeating some of its own clips.
    The batches of all buckets are shuffled together, their count is rounded up to a multiple of
    num_replicas by repeating batches, and rank r takes batches r, r + num_replicas, ...: every rank
    gets the same number of batches, which DDP needs to stay in step.

    With max_frames_per_batch, the batch size of each bucket is max(1, max_frames_per_batch //
    longest clip of the bucket) instead of batch_size (frame-budget batching).
    """

    def __init__(self, dataset, batch_size: int, boundaries: Sequence[int], num_replicas: Optional[int] = None,
                 rank: Optional[int] = None, shuffle: bool = True, seed: int = 0,
                 max_frames_per_batch: Optional[int] = None):
        if num_replicas is None:
            num_replicas = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        if rank is None:
            rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is outside [0, {num_replicas})")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        boundaries = [int(b) for b in boundaries]
        if len(boundaries) < 2 or any(a >= b for a, b in zip(boundaries, boundaries[1:])):
            raise ValueError(f"boundaries must be at least two strictly increasing lengths, got {boundaries}")
        lengths = getattr(dataset, "lengths", None)
        if lengths is None:
            raise ValueError("DistributedBucketSampler needs dataset.lengths (mel frames per item)")
        self.lengths = [int(x) for x in lengths]
        self.batch_size, self.boundaries = batch_size, boundaries
        self.num_replicas, self.rank, self.shuffle, self.seed = num_replicas, rank, shuffle, seed
        self.max_frames_per_batch = max_frames_per_batch
        self.epoch = 0
        self.buckets = self._make_buckets(getattr(dataset, "paths", None))
        self.bucket_batch_sizes = [self._bucket_batch_size(b) for b in self.buckets]
        n_batches = sum(math.ceil(len(b) / bs) for b, bs in zip(self.buckets, self.bucket_batch_sizes))
        self.num_batches = math.ceil(n_batches / num_replicas)  # per rank

    def _make_buckets(self, paths: Optional[Sequence[str]]) -> List[List[int]]:
        buckets: List[List[int]] = [[] for _ in range(len(self.boundaries) - 1)]
        outside = []
        for i, length in enumerate(self.lengths):
            b = int(np.searchsorted(self.boundaries, length, side="left")) - 1  # boundaries[b] < length <= [b+1]
            if 0 <= b < len(buckets):
                buckets[b].append(i)
            else:
                outside.append(i)
        if outside:
            examples = ", ".join(f"{paths[i] if paths else i} ({self.lengths[i]} frames)" for i in outside[:5])
            logger.warning("DistributedBucketSampler: %d of %d clips are outside the bucket boundaries (%d, %d] "
                           "mel frames and will not be used, e.g. %s", len(outside), len(self.lengths),
                           self.boundaries[0], self.boundaries[-1], examples)
        buckets = [b for b in buckets if b]
        if not buckets:
            raise ValueError(f"no clip length falls inside the bucket boundaries {self.boundaries} (lengths range "
                             f"{min(self.lengths, default=0)}..{max(self.lengths, default=0)} frames); widen them")
        return buckets

    def _bucket_batch_size(self, bucket: List[int]) -> int:
        if self.max_frames_per_batch is None:
            return self.batch_size
        return max(1, self.max_frames_per_batch // max(self.lengths[i] for i in bucket))

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for this epoch; call it on every rank with the same value before iterating."""
        self.epoch = epoch

    def _all_batches(self) -> List[List[int]]:
        """The global batch list for this epoch, identical on every rank."""
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        batches = []
        for bucket, bs in zip(self.buckets, self.bucket_batch_sizes):
            order = [bucket[i] for i in torch.randperm(len(bucket), generator=g)] if self.shuffle else list(bucket)
            n_full = math.ceil(len(order) / bs) * bs
            order = [order[i % len(order)] for i in range(n_full)]  # fill the last batch with repeats
            batches += [order[i: i + bs] for i in range(0, n_full, bs)]
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=g)]
        total = self.num_batches * self.num_replicas
        return [batches[i % len(batches)] for i in range(total)]

    def __iter__(self) -> Iterator[List[int]]:
        return iter(self._all_batches()[self.rank:: self.num_replicas])

    def __len__(self) -> int:
        return self.num_batches
