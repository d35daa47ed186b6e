"""Long and weighted prompts in AUTOMATIC1111's syntax, for the CLIP families (SD 1.x, 2.x, SDXL), through compel.

`(word:1.3)` multiplies the attention to `word` by 1.3, `(word)` by 1.1, `[word]` divides it by 1.1 (they nest),
`\\(` is a literal bracket, `BREAK` starts a new 75-token chunk, and prompts longer than the text encoder reads are
encoded in chunks instead of being cut. The weighting itself is compel's: a token's embedding moves away from
the empty prompt's by its weight (weights below 1 blend towards the prompt without those words). A prompt with no
weights that fits is left to the pipeline, so it gives exactly the embeddings it always did.

>>> parse("a (red:1.5) cat, [blurry]")
[('a ', 1.0), ('red', 1.5), (' cat, ', 1.0), ('blurry', 0.9090909090909091)]
"""

from __future__ import annotations

import re
import warnings

import torch
from compel import Compel, ReturnedEmbeddingsType

from ..base import quiet
from ..base.errors import ZooError

CLIP_FAMILIES = ("sd1", "sd2", "sdxl")

# AUTOMATIC1111's attention grammar (modules/prompt_parser.py): escapes, brackets, ":weight)", plain text.
_ATTENTION = re.compile(r"\\\(|\\\)|\\\[|\\]|\\\\|\\|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|]|[^\\()\[\]:]+|:", re.X)
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)
_SAID: set[str] = set()  # prompts whose bracket mistakes were said in this process (a hires pass reads them again)


def parse(text: str) -> list[tuple[str, float]]:
    """A1111's (text, weight) runs of a prompt; a BREAK is the run ("BREAK", -1)."""
    return _parse(text)[0]


def mistakes(text: str) -> str | None:
    """What in a prompt's brackets A1111 reads other than a writer may mean, and how it was read; None if nothing.

    >>> mistakes("((((a cat")
    "4 '(' never closed (each weights the rest x1.1). Read as: 'a cat' x1.46"
    """
    runs, notes = _parse(text)
    if not notes:
        return None
    read = ", ".join(f"{t.strip()!r} x{w:.3g}" if w != 1.0 else repr(t.strip()) for t, w in runs if t.strip())
    return f"{'; '.join(notes)}. Read as: {read}"


def _parse(text: str) -> tuple[list[tuple[str, float]], list[str]]:
    """The runs of `parse`, and notes on brackets that A1111's rules read in a way a writer may not mean."""
    res: list[list] = []
    round_open, square_open = [], []
    stray, colons = [], []

    def multiply(start: int, factor: float) -> None:
        for run in res[start:]:
            run[1] *= factor

    for m in _ATTENTION.finditer(text):
        part, weight = m.group(0), m.group(1)
        if part.startswith("\\"):
            res.append([part[1:], 1.0])
        elif part == "(":
            round_open.append(len(res))
        elif part == "[":
            square_open.append(len(res))
        elif weight is not None and round_open:
            multiply(round_open.pop(), float(weight))
        elif part == ")" and round_open:
            multiply(round_open.pop(), 1.1)
        elif part == "]" and square_open:
            multiply(square_open.pop(), 1 / 1.1)
        else:
            if part in (")", "]"):
                stray.append(part)
            elif part == ":" and round_open:
                colons.append(part)
            for i, piece in enumerate(_BREAK.split(part)):
                if i:
                    res.append(["BREAK", -1])
                if piece:
                    res.append([piece, 1.0])
    for start in round_open:
        multiply(start, 1.1)
    for start in square_open:
        multiply(start, 1 / 1.1)
    notes = []
    if round_open:
        notes.append(f"{len(round_open)} '(' never closed (each weights the rest x1.1)")
    if square_open:
        notes.append(f"{len(square_open)} '[' never closed (each weights the rest /1.1)")
    if stray:
        kinds = " and ".join(f"'{c}'" for c in sorted(set(stray)))
        notes.append(f"{len(stray)} {kinds} without an opening bracket, kept as text")
    if colons:
        notes.append("a ':' in brackets not followed by a number and ')' is no weight: kept as text, the brackets "
                     "weight x1.1")  # fmt: skip
    merged: list[list] = []
    for run in res or [["", 1.0]]:
        if merged and merged[-1][1] == run[1] and run[1] != -1:
            merged[-1][0] += run[0]
        else:
            merged.append(run)
    return [(t, w) for t, w in merged], notes


def is_plain(text: str) -> bool:
    """Whether a prompt means exactly its words (no weights, no BREAK): the pipeline encodes it as always."""
    runs = parse(text)
    return len(runs) == 1 and runs[0][1] == 1.0 and runs[0][0] == text


def fits(pipe, text: str) -> bool:
    """Whether the prompt fits the first text encoder's window (77 tokens with the start and end markers)."""
    tok = pipe.tokenizer
    return len(tok(text, add_special_tokens=True, verbose=False).input_ids) <= tok.model_max_length


def embeddings(pipe, family: str, prompt: str, negative_prompt: str | None, guided: bool,
               clip_skip: int | None = None) -> dict:  # fmt: skip
    """The pipeline call's `prompt_embeds` (and negative, pooled) for a weighted or long prompt; {} for a plain one.

    `clip_skip` is diffusers' (None or 1 on SD 1.x: the last or the penultimate layer, layer-normed as diffusers does).
    """
    if family not in CLIP_FAMILIES or getattr(pipe, "tokenizer", None) is None:
        return {}
    texts = [prompt] + ([negative_prompt] if negative_prompt else [])
    for name, text in zip(("prompt", "negative prompt"), texts, strict=False):
        said = mistakes(text)
        if said and text not in _SAID:  # read as A1111 reads it, which is right; said once, so the user sees how
            _SAID.add(text)
            warnings.warn(f"The {name}'s brackets were read as A1111 reads them: {said}", stacklevel=4)
    if all(is_plain(t) and fits(pipe, t) for t in texts):
        return {}
    # compel reads a long prompt in chunks: transformers' notice that it is too long "(482 > 77) ... indexing
    # errors" is wrong here.
    with quiet.no_truncation_notice(pipe):
        return _embeddings(_encoders(pipe, family, clip_skip), pipe, family, prompt, negative_prompt, guided)


def _embeddings(encoders, pipe, family: str, prompt: str, negative_prompt: str | None, guided: bool) -> dict:
    positive = _encode(encoders, prompt)
    out = {"prompt_embeds": positive[0]}
    if family == "sdxl":
        out["pooled_prompt_embeds"] = positive[1]
    if guided and (negative_prompt or family != "sdxl" or not pipe.config.get("force_zeros_for_empty_prompt")):
        negative = _encode(encoders, negative_prompt or "")
        out["prompt_embeds"], out["negative_prompt_embeds"] = _same_length(positive[0], negative[0], encoders)
        if family == "sdxl":
            out["negative_pooled_prompt_embeds"] = negative[1]
    return out


def _encoders(pipe, family: str, clip_skip: int | None = None) -> list[Compel]:
    if clip_skip not in (None, 1):
        raise ZooError(
            f"weighted or long prompts are encoded with A1111's clip skip 1 or 2 only (got {clip_skip + 1}): "
            "use clip_skip=2, or a plain prompt that fits 75 tokens"
        )
    if family != "sdxl":
        layer = ReturnedEmbeddingsType.PENULTIMATE_HIDDEN_STATES_NORMALIZED if clip_skip else None
        layer = layer or ReturnedEmbeddingsType.LAST_HIDDEN_STATES_NORMALIZED
        return [Compel(tokenizer=pipe.tokenizer, text_encoder=pipe.text_encoder, truncate_long_prompts=False,
                       returned_embeddings_type=layer)]  # fmt: skip
    hidden = ReturnedEmbeddingsType.PENULTIMATE_HIDDEN_STATES_NON_NORMALIZED  # what SDXL's pipeline uses
    encoders = []
    for tok, enc, pooled in ((pipe.tokenizer, pipe.text_encoder, False), (pipe.tokenizer_2, pipe.text_encoder_2, True)):
        if enc is not None:
            encoders.append(
                Compel(
                    tokenizer=tok,
                    text_encoder=enc,
                    returned_embeddings_type=hidden,
                    truncate_long_prompts=False,
                    requires_pooled=pooled,
                )  # fmt: skip
            )
    return encoders


@torch.no_grad()
def _encode(encoders: list[Compel], text: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Each encoder's weighted embeddings of the prompt, chunk by chunk (BREAK starts a chunk), side by side."""
    parts, current = [], []
    for run in parse(text):
        if run[1] == -1:
            parts.append(current)
            current = []
        else:
            current.append(run)
    parts.append(current)
    per_encoder, pooled = [], None
    for compel in encoders:
        provider = compel.conditioning_provider
        chunks = [
            provider.get_embeddings_for_weighted_prompt_fragments(
                [[t for t, _ in part] or [""]], [[w for _, w in part] or [1.0]], device=compel.device
            )
            for part in parts
        ]
        per_encoder.append(torch.cat(chunks, dim=1))
        if compel.requires_pooled:
            plain = "".join(t for t, w in parse(text) if w != -1)
            pooled = provider.get_pooled_embeddings([plain], device=compel.device)
    return torch.cat(per_encoder, dim=-1), pooled


def _same_length(a: torch.Tensor, b: torch.Tensor, encoders: list[Compel]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad the shorter embeddings with the empty prompt's chunks, as compel does, so guidance can batch them."""
    if a.shape[1] == b.shape[1]:
        return a, b
    empty = _encode(encoders, "")[0]
    short, long_ = (a, b) if a.shape[1] < b.shape[1] else (b, a)
    repeats = (long_.shape[1] - short.shape[1]) // empty.shape[1]
    short = torch.cat([short, empty.repeat(1, repeats, 1).to(short)], dim=1)
    return (short, long_) if a.shape[1] < b.shape[1] else (long_, short)
