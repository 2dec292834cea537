"""The simulated language model: a pure function from (prompt, parameters, seed) to tokens with logprobs.

Everything random comes from a ``random.Random`` seeded with a blake2b digest of what the real model's output
depends on: the prompt after truncation, the decoding parameters, and the seed when (and only when) decoding
effectively samples. So greedy requests ignore the seed, sampled ones are reproduced by re-sending the returned
seed, and ``max_new_tokens`` / stop sequences only cut the same token stream shorter. Knobs that do not change
what a real model generates (details, top_n_tokens, return_full_text) are kept out of the key.
"""

from __future__ import annotations

import hashlib
import random
import secrets
from dataclasses import dataclass
from typing import Protocol

from tgbatch.backends.tgi.rules import Parameters
from tgbatch.sim.vocab import EOS_ID, EOS_TEXT, GENERATED_IDS, PIECES, piece_id, tokenize

TokenTuple = tuple[int, str, float, bool]
PrefillTuple = tuple[int, str, float | None]

_N_GEN = len(GENERATED_IDS)


def _f32ish(value: float) -> float:
    # TGI serialises f32 logprobs (shortest repr, ~7 significant digits); long float64 reprs would look foreign
    return float(f"{value:.7g}")


def _table(seed: int, size: int, scale: float, power: float) -> tuple[float, ...]:
    rng = random.Random(seed)
    return tuple(_f32ish(-scale * rng.random() ** power) for _ in range(size))


# logprob of the most likely token at a step (mostly close to 0), gaps down to the next candidates, and the
# logprobs of prompt tokens; precomputed so a step costs one getrandbits call and a few lookups
_TOP_LP = _table(1, 4096, 3.0, 2.0)
_GAP_LP = _table(2, 4096, 2.0, 1.0)
_PREFILL_LP = _table(3, 4096, 9.0, 1.0)
_EOS_LP = _table(4, 4096, 0.5, 2.0)


class GrammarSampler(Protocol):
    """A compiled grammar: draws one string the grammar accepts."""

    key: str

    def sample(self, rng: random.Random) -> str: ...


@dataclass(frozen=True, slots=True)
class Prompt:
    """The prompt as the model sees it: after left truncation."""

    pieces: list[str]
    text: str


@dataclass(slots=True)
class Generation:
    """What the model produced for one sequence (before the router adds the prompt for return_full_text)."""

    tokens: list[TokenTuple]
    text: str
    finish_reason: str
    seed: int | None
    top_tokens: list[list[TokenTuple]] | None
    prefill: list[PrefillTuple]

    @property
    def mean_logprob(self) -> float:
        # best_of picks the highest mean logprob over generated tokens (infer/mod.rs generate_best_of)
        return sum(t[2] for t in self.tokens) / len(self.tokens) if self.tokens else float("-inf")


def prompt_of(inputs: str, truncate: int | None) -> tuple[Prompt, int]:
    """Tokenise ``inputs``; keep the last ``truncate`` pieces. Returns the model's prompt and the full length."""
    pieces = tokenize(inputs)
    full = len(pieces)
    if truncate is not None and truncate < full:
        pieces = pieces[full - truncate :]
        return Prompt(pieces, "".join(pieces)), full
    return Prompt(pieces, inputs), full


def draw_seed() -> int:
    """The seed of a sampled request that gave none: a uniformly random u64, as TGI's router draws it from
    thread_rng. Re-sending the returned seed reproduces the answer; resending without one samples anew (so
    samples of the same prompt differ, as on a real server)."""
    return secrets.randbits(64)


def _key(prompt: Prompt, p: Parameters, sampling: bool, seed: int | None, grammar: GrammarSampler | None) -> int:
    decoding: list[object] = [p.repetition_penalty, p.frequency_penalty, p.watermark, p.adapter_id]
    if sampling:
        decoding += [p.do_sample, p.temperature, p.top_k, p.top_p, p.typical_p, seed]
    if grammar is not None:
        decoding.append(grammar.key)
    material = prompt.text.encode("utf-8", "surrogatepass") + b"\x00" + repr(decoding).encode()
    return int.from_bytes(hashlib.blake2b(material, digest_size=8).digest(), "big")


def _alternatives(x: int, first: TokenTuple, n: int) -> list[TokenTuple]:
    """The ``n`` most likely tokens at a step whose top token is ``first``, in decreasing logprob order."""
    out = [first]
    if n <= 1:
        return out
    rng = random.Random(x)
    used = {first[0]}
    lp = first[2]
    while len(out) < n:
        tid = GENERATED_IDS[rng.getrandbits(32) % _N_GEN]
        if tid in used:
            continue
        used.add(tid)
        lp = _f32ish(lp - 0.01 + _GAP_LP[rng.getrandbits(12)])  # gaps are <= 0
        out.append((tid, PIECES[tid], lp, False))
    return out


def _prefill(prompt: Prompt) -> list[PrefillTuple]:
    out: list[PrefillTuple] = []
    prev = 0
    for i, piece in enumerate(prompt.pieces):
        tid = piece_id(piece)
        # the first prompt token has no context, so no logprob (TGI sends NaN as null)
        out.append((tid, piece, None if i == 0 else _PREFILL_LP[(prev * 31 + tid) & 0xFFF]))
        prev = tid
    return out


def _top_token(x: int, step: int, eos_at: int, forced: list[str] | None) -> TokenTuple:
    """The most likely token at ``step`` (``x``: the step's random bits): EOS where the model stops, the
    grammar's next piece when constrained, else a word drawn from the vocabulary."""
    if step == eos_at:
        return (EOS_ID, EOS_TEXT, _EOS_LP[x & 0xFFF], True)
    if forced is not None:
        piece = forced[step]
        return (piece_id(piece), piece, _TOP_LP[x & 0xFFF], False)
    tid = GENERATED_IDS[(x >> 12) % _N_GEN]
    return (tid, PIECES[tid], _TOP_LP[x & 0xFFF], False)


def generate(
    prompt: Prompt,
    p: Parameters,
    *,
    seed: int,
    max_new_tokens: int,
    min_output_tokens: int,
    max_output_tokens: int,
    grammar: GrammarSampler | None = None,
) -> Generation:
    """Run the model. ``seed`` is the request's effective seed (given or drawn); it only matters when sampling."""
    sampling = p.effectively_sampling
    rng = random.Random(_key(prompt, p, sampling, seed if sampling else None, grammar))
    # where the model would emit EOS on its own, unless max_new_tokens or a stop sequence comes first
    forced: list[str] | None = None
    if grammar is not None:
        forced = tokenize(grammar.sample(rng))
        eos_at = len(forced)
    else:
        eos_at = min_output_tokens + rng.getrandbits(32) % (max_output_tokens - min_output_tokens + 1)
    top_n = p.top_n_tokens or 0
    stops = p.stop
    temperature = p.temperature if p.temperature is not None else 1.0
    keep_top = min(0.95, 0.7 / max(temperature, 0.05)) if sampling else 1.0
    top_k = p.top_k if p.top_k else 3

    tokens: list[TokenTuple] = []
    top_tokens: list[list[TokenTuple]] | None = [] if top_n else None
    texts: list[str] = []
    output = ""  # only tracked when there are stop sequences to match against
    finish = "length"
    for step in range(max_new_tokens):
        x = rng.getrandbits(64)
        top = _top_token(x, step, eos_at, forced)
        chosen = top
        if sampling and forced is None and step != eos_at and ((x >> 40) & 0xFFFF) >= keep_top * 65536:
            rank = min(1 + (x >> 58) % 3, top_k - 1)
            if rank:
                chosen = _alternatives(x, top, rank + 1)[rank]
        tokens.append(chosen)
        if top_tokens is not None:
            top_tokens.append(_alternatives(x, top, top_n))
        if not chosen[3]:
            texts.append(chosen[1])
        # TGI's stopping criteria order: max_new_tokens, then EOS, then stop sequences (on the text so far)
        if step + 1 >= max_new_tokens:
            finish = "length"
            break
        if chosen[3]:
            finish = "eos_token"
            break
        if stops:
            output += chosen[1]
            if any(output.endswith(s) for s in stops):
                finish = "stop_sequence"
                break
    return Generation(
        tokens=tokens,
        text="".join(texts),
        finish_reason=finish,
        seed=seed if sampling else None,
        top_tokens=top_tokens,
        prefill=_prefill(prompt) if p.decoder_input_details else [],
    )
