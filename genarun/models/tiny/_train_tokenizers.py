"""Trains the tokenizers that the tiny models ship with: run once, commit the files it writes.

`tokenizers` breaks BPE ties differently from run to run, so builders never retrain: they load
the files in `genarun/models/tokenizers/<name>/`. Rerun with
`python -m genarun.models.tiny._train_tokenizers` only to change the vocabulary on purpose.
"""

from __future__ import annotations

import json
from pathlib import Path

TOKENIZERS_DIR = Path(__file__).resolve().parent.parent / "tokenizers"
GPT2_DIR = TOKENIZERS_DIR / "gpt2-bpe"
BERT_DIR = TOKENIZERS_DIR / "bert-wordpiece"

GPT2_VOCAB_SIZE = 1024
BERT_VOCAB_SIZE = 1024
BERT_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]

# Plain English about the things genarun's trees talk about, so common words get whole tokens.
CORPUS = """\
A photo of a cat sitting on a wooden table next to a cup of coffee.
A small dog runs across the green grass in the park on a sunny day.
Two people walk along the beach at sunset while the waves roll in.
A red car is parked on the street in front of an old brick house.
The mountains are covered with snow and the sky above them is blue.
A bowl of fruit with apples, oranges and bananas on a kitchen counter.
A man is riding a bicycle down a busy city road full of cars and buses.
A woman is reading a book in a chair by the window of a quiet room.
A bird is flying over the lake, and the trees are reflected in the water.
A painting of a lighthouse on a rocky coast during a storm at night.
Write a short article about keeping pet lizards healthy and happy.
Bearded dragons need warm light, fresh vegetables and clean water every day.
Geckos are small lizards that can climb walls and live for many years.
List five article titles about the care of reptiles, as a JSON array of strings.
The quick brown fox jumps over the lazy dog.
Once upon a time there was a little girl who lived in a village near the forest.
The weather today is cloudy with a chance of rain in the afternoon and evening.
Scientists study the stars, the planets and the moon with large telescopes.
The market sells bread, cheese, fish, flowers and fresh vegetables every morning.
Describe the image in one sentence. What is in this picture? A close up of a face.
An illustration of a robot holding a flower in a garden, in a soft watercolor style.
A black and white photograph of a train crossing a bridge over a river.
The children are playing football in the school yard after their lessons.
A plate of pasta with tomato sauce and basil on a white table cloth.
The city at night is full of lights, and people are walking in the rain.
A horse stands in a field of yellow flowers under a bright summer sky.
He said that the model writes a story, then paints a picture of the story.
She asked the model to describe the picture, and it answered with a caption.
Every output is embedded, stored and compared with the outputs that came before it.
This is a test. This is only a test. Hello, world! How are you today?
Numbers like 1, 2, 3, 10, 42, 100 and 2024 appear in dates, prices and counts.
The stock market rose today as investors bought shares of technology companies.
A kitten is sleeping on a soft blanket beside a large window.
"""


def train_gpt2_bpe(out: Path = GPT2_DIR) -> None:
    """Byte-level BPE like GPT-2's: writes vocab.json and merges.txt."""
    from tokenizers import ByteLevelBPETokenizer

    tokenizer = ByteLevelBPETokenizer()
    tokenizer.train_from_iterator(
        CORPUS.splitlines(),
        vocab_size=GPT2_VOCAB_SIZE,
        min_frequency=1,
        special_tokens=["<|endoftext|>"],
    )
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_model(str(out))


def train_bert_wordpiece(out: Path = BERT_DIR) -> None:
    """Uncased WordPiece like BERT's (BLIP's text side): writes vocab.txt."""
    from tokenizers import BertWordPieceTokenizer

    tokenizer = BertWordPieceTokenizer(lowercase=True)
    tokenizer.train_from_iterator(
        CORPUS.splitlines(),
        vocab_size=BERT_VOCAB_SIZE,
        min_frequency=1,
        special_tokens=BERT_SPECIAL,
    )
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_model(str(out))


def main() -> None:
    train_gpt2_bpe()
    train_bert_wordpiece()
    vocab = json.loads((GPT2_DIR / "vocab.json").read_text())
    print(
        f"gpt2-bpe: {len(vocab)} tokens; bert-wordpiece: "
        f"{len((BERT_DIR / 'vocab.txt').read_text().splitlines())} tokens"
    )


if __name__ == "__main__":
    main()
