"""The simulated model's tokenizer and vocabulary: word-level, lossless, deterministic across processes.

A token is a run of word characters or one other character, with the whitespace before it attached (as
sentencepiece/BPE tokenizers attach a leading space), so ``"".join(tokenize(s)) == s`` for every string. Known
pieces have fixed ids; unknown ones get a stable id from a keyed hash, so prompts in any language tokenize the
same way in every process.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

VOCAB_SIZE: Final = 32000
UNK_ID: Final = 0
BOS_ID: Final = 1
EOS_ID: Final = 2
EOS_TEXT: Final = "</s>"

_TOKEN_RE: Final = re.compile(r"\s*\w+|\s*[^\w\s]|\s+")

_WORDS: Final = """
the of and to in is was for that on with as by it at from his he an be this are or which had not her but
have one were they their all new has been more she first its who after also two time would year other
into about there when up out some only over most can years no we may city than then world made so these him
people three many state between known during part like school under since while used later both where film
through such well war before states area family day team series work called being life day back long same
season life through each name river found around album music own last high number because south north best
several early house de against government public him four game band place water second them book light small
house song did town little old large great county until station history way what county university any see
down against five us again very off take good our field story home system end make come every end next
land played including among right region near year land still form another set road age point word hand
head power group country side body line east west order left given city village another main built tree
company won case air place free play fire sea mind local great open sound black white red green blue gold
silver stone wood iron glass paper cloud rain snow wind storm star moon sun sky night morning evening summer
winter spring autumn garden forest mountain valley lake ocean island bridge tower castle church market
street library museum hospital kitchen window door table chair letter message signal answer question reason
result method model data value price cost rate level range scale number amount size speed force energy
heat color shape pattern surface edge center corner circle square line curve angle path route journey
travel arrive leave begin finish start stop move turn change grow build break carry write read speak
listen watch learn teach think know believe remember forget understand explain describe create design test
measure compare choose decide follow lead help need want like love hope wish try keep hold give send bring
quick slow bright dark warm cold soft hard quiet loud simple complex early late young ancient modern
strong weak rich poor happy careful clever gentle brave calm eager fair kind proud wise honest patient
always never often sometimes usually rarely already almost perhaps indeed together alone ahead behind
above below inside outside within without across along toward beyond because although however therefore
""".split()  # noqa: SIM905 - a word list reads better as text

_PUNCTUATION: Final = [".", ",", ":", ";", "!", "?", "'", '"', "(", ")", "-", "\n", "\n\n"]


def _build() -> tuple[list[str], dict[str, int]]:
    pieces = ["<unk>", "<s>", EOS_TEXT]
    seen = set(pieces)
    for piece in _PUNCTUATION + [w for w in _WORDS] + [" " + w for w in _WORDS]:
        if piece not in seen:
            seen.add(piece)
            pieces.append(piece)
    return pieces, {piece: i for i, piece in enumerate(pieces)}


#: id -> text for the known pieces; ids >= len(PIECES) are hashed unknown pieces
PIECES, PIECE_IDS = _build()
#: the pieces the model generates from: leading-space words, with some punctuation mixed in
GENERATED_IDS: Final = tuple(
    [PIECE_IDS[" " + w] for w in dict.fromkeys(_WORDS)] + [PIECE_IDS["."]] * 24 + [PIECE_IDS[","]] * 20
)


def tokenize(text: str) -> list[str]:
    """Split ``text`` into pieces whose concatenation is ``text``."""
    return _TOKEN_RE.findall(text)


def count_tokens(text: str) -> int:
    return len(_TOKEN_RE.findall(text))


def piece_id(piece: str) -> int:
    known = PIECE_IDS.get(piece)
    if known is not None:
        return known
    digest = hashlib.blake2b(piece.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return len(PIECES) + int.from_bytes(digest, "little") % (VOCAB_SIZE - len(PIECES))
