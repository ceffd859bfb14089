"""Trains the small tokenizers that the tiny diffusion models ship with.

Run once by hand (`python -m genarun.models.tiny.train_tokenizers`); the results are committed in
`genarun/models/tokenizers/`. BPE training breaks ties differently from run to run, so builders
load the shipped files instead of training at build time: that keeps tiny models byte-identical.

- `clip-bpe/`: a CLIP-style byte-level BPE (`</w>` word ends), loaded with `CLIPTokenizer`.
- `t5-unigram/`: a T5-style Unigram model (`<pad>`, `</s>`, `<unk>` first), loaded with
  `T5Tokenizer`.
"""

from __future__ import annotations

import json
from pathlib import Path

TOKENIZERS_DIR = Path(__file__).resolve().parent.parent / "tokenizers"
CLIP_DIR = TOKENIZERS_DIR / "clip-bpe"
T5_DIR = TOKENIZERS_DIR / "t5-unigram"

CLIP_VOCAB_SIZE = 1024
T5_VOCAB_SIZE = 512

# Prompt-like English: the words image prompts use, so common prompts become few tokens.
CORPUS = """\
A photo of a cat sitting on a red chair by the window, soft morning light.
A watercolor painting of a lighthouse on a rocky coast at sunset, with waves and seagulls.
An oil painting of a bowl of fruit: apples, pears, grapes and a lemon on a wooden table.
A close-up portrait of an old man with a white beard, dramatic lighting, high detail.
A bearded dragon resting on a warm stone under a heat lamp in a glass terrarium.
A leopard gecko climbing a branch, macro photograph, shallow depth of field.
A cozy cabin in a snowy forest at night, warm light glowing from the windows.
A futuristic city skyline with flying cars and neon signs in the rain.
A cup of coffee and an open book on a table in a quiet cafe, film photograph.
A mountain lake reflecting pine trees and clouds, bright blue sky, landscape photo.
A small robot watering plants in a greenhouse, digital art, soft colors.
A bold poster of a rocket launching into space, flat design, orange and teal.
An ink drawing of a dragon flying over a castle, black and white, detailed lines.
A field of sunflowers under a summer sky, impressionist style, thick brush strokes.
A dog running on the beach with a ball, golden hour, motion blur.
A bowl of ramen with egg, green onion and noodles, food photography, top view.
A vintage car parked on an empty street, black and white photograph, grainy film.
A child reading a book under a tree, children's book illustration, pastel colors.
A stained glass window with birds and flowers, vivid red, blue, green and yellow.
A map of an imaginary island with forests, rivers, mountains and a small village.
An astronaut riding a horse on the moon, cinematic, highly detailed, 4k.
A minimalist logo of a fox, simple shapes, vector art, white background.
A misty morning in a bamboo forest, quiet and calm, soft green light.
A busy market street with fruit stalls, people, lanterns and bright umbrellas.
A sleeping kitten curled up in a basket of yarn, warm and soft, cute.
A storm over the ocean, dark clouds, lightning, huge waves crashing on rocks.
A medieval knight in shining armor holding a sword, fantasy art, epic.
A garden with roses, tulips and daisies, spring, sunny day, bees and butterflies.
A pencil sketch of a city bridge over a river, loose lines, light shading.
A glass of orange juice on a kitchen counter in the morning sun, clean and bright.
An abstract painting with circles, lines and squares in bold primary colors.
A tortoise eating lettuce in the grass, nature photo, sharp focus.
The cover of a blog article about pet lizard care, friendly and clear.
Keeping geckos healthy: the right food, light, heat, water and a clean home.
A scientist in a lab looking at a glowing plant, science fiction, blue light.
A snowy owl on a fence post in winter, white feathers, gray sky.
A sailing boat on a calm sea, blue and white, watercolor, simple and light.
A photograph of a street at night with wet pavement reflecting the lights.
What is in this picture? A person, a house, a tree, a car, a road and the sky.
It is one of the best, most beautiful and most interesting images they have seen.
"""


def train_clip_bpe(target: Path = CLIP_DIR, vocab_size: int = CLIP_VOCAB_SIZE) -> None:
    """Train the CLIP-style BPE and write vocab.json and merges.txt into `target`."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(end_of_word_suffix="</w>", unk_token="<|endoftext|>"))
    # The same normalizer and pre-tokenizer as transformers' CLIPTokenizer, so the merges fit.
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(
                Regex(
                    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
                ),
                behavior="removed",
                invert=True,
            ),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|startoftext|>", "<|endoftext|>"],
        initial_alphabet=alphabet,
        end_of_word_suffix="</w>",
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS.splitlines(), trainer=trainer)
    state = json.loads(tokenizer.to_str())["model"]
    vocab: dict[str, int] = dict(sorted(state["vocab"].items(), key=lambda item: item[1]))
    # Every byte also as a word end, so any text tokenizes without unknown tokens.
    for char in sorted(alphabet):
        vocab.setdefault(char + "</w>", len(vocab))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    target.mkdir(parents=True, exist_ok=True)
    (target / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=0) + "\n")
    (target / "merges.txt").write_text("".join(f"{a} {b}\n" for a, b in merges))


def train_t5_unigram(target: Path = T5_DIR, vocab_size: int = T5_VOCAB_SIZE) -> None:
    """Train the T5-style Unigram model and write vocab.json ([piece, score] pairs) into `target`."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.Unigram())
    # The same pre-tokenizer as transformers' T5Tokenizer.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True),
        ]
    )
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "</s>", "<unk>"],
        unk_token="<unk>",
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS.splitlines(), trainer=trainer)
    vocab = json.loads(tokenizer.to_str())["model"]["vocab"]
    target.mkdir(parents=True, exist_ok=True)
    (target / "vocab.json").write_text(
        "[\n"
        + ",\n".join(json.dumps([p, round(s, 6)], ensure_ascii=False) for p, s in vocab)
        + "\n]\n"
    )


def load_clip_tokenizer_files(
    folder: Path = CLIP_DIR,
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The shipped CLIP vocab and merges, merges as tuples (what CLIPTokenizer expects)."""
    vocab = json.loads((folder / "vocab.json").read_text())
    merges = [tuple(line.split(" ")) for line in (folder / "merges.txt").read_text().splitlines()]
    return vocab, [(a, b) for a, b in merges]


def load_t5_vocab(folder: Path = T5_DIR) -> list[tuple[str, float]]:
    """The shipped T5 Unigram vocab as (piece, score) pairs."""
    return [(p, float(s)) for p, s in json.loads((folder / "vocab.json").read_text())]


if __name__ == "__main__":
    train_clip_bpe()
    train_t5_unigram()
    print(f"wrote {CLIP_DIR} and {T5_DIR}")
