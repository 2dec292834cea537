"""The simulated model behind the OpenAI routes: checks a job against the context length, then runs the
deterministic model once per prompt and choice, with the reasoning phase first when the model thinks.

Reasoning is generated like the answer (from the prompt followed by ``<think>``, so the same request gives the
same thoughts), without the grammar or stop strings, which apply to the answer only; the ``<think>`` and
``</think>`` markers are one token each and, with the thoughts, count in ``completion_tokens``.
"""

from __future__ import annotations

from dataclasses import dataclass

from tgbatch.backends.tgi.rules import Parameters
from tgbatch.errors import TGIError
from tgbatch.sim.config import SimConfig
from tgbatch.sim.grammar import compile_grammar
from tgbatch.sim.model import Generation, GrammarSampler, Prompt, TokenTuple, draw_seed, generate, prompt_of
from tgbatch.sim.openai.flavors import Flavor
from tgbatch.sim.openai.requests import BadRequest, Job
from tgbatch.sim.router import Router
from tgbatch.sim.vocab import piece_id

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
_U64 = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class Step:
    """One generated token the client sees (EOS excluded): its alternatives when asked, and which part of the
    output it belongs to: "think" (reasoning), "marker" (<think>, </think>) or "answer"."""

    token: TokenTuple
    top: list[TokenTuple] | None
    part: str


@dataclass(slots=True)
class Output:
    index: int
    prompt_tokens: int
    steps: list[Step]
    completion_tokens: int
    #: the model's reason: eos_token, length, stop_sequence
    finish: str
    #: the stop string that ended the answer, if one did
    stop: str | None

    @property
    def reasoning_text(self) -> str:
        return "".join(s.token[1] for s in self.steps if s.part == "think")

    @property
    def text(self) -> str:
        return "".join(s.token[1] for s in self.steps if s.part == "answer")

    @property
    def inline_text(self) -> str:
        """The whole output as text, for a server without a reasoning parser."""
        return "".join(s.token[1] for s in self.steps)


@dataclass(slots=True)
class Planned:
    prompts: list[Prompt]
    prompt_tokens: list[int]
    max_new: list[int]
    grammar: GrammarSampler | None


def plan(job: Job, flavor: Flavor, router: Router, config: SimConfig) -> Planned:
    """Validation: TGI's router rules for the tgi flavour (422 with its messages), the context length and the
    grammar's compilation elsewhere (400)."""
    prompts, lengths, max_new = [], [], []
    grammar = None
    for text in job.prompts:
        if flavor.name == "tgi":
            try:
                p = router.validate(text, job.params)
            except TGIError as err:
                raise BadRequest(err.message) from err
            grammar = p.grammar
            prompts.append(p.prompt)
            lengths.append(p.input_length + job.special_tokens)
            max_new.append(p.max_new_tokens)
            continue
        prompt, length = prompt_of(text, None)
        length += job.special_tokens
        limit = config.max_total_tokens
        wanted = job.max_tokens if job.max_tokens is not None else max(limit - length, 0)
        if length > config.max_input_tokens or length + wanted > limit or wanted == 0:
            raise BadRequest(flavor.context_error(limit, length, job.max_tokens))
        prompts.append(prompt)
        lengths.append(length)
        max_new.append(wanted)
    if flavor.name != "tgi" and job.params.grammar is not None:
        try:
            grammar = compile_grammar(job.params.grammar)
        except TGIError as err:
            raise BadRequest(err.message) from err
    return Planned(prompts, lengths, max_new, grammar)


def _marker(text: str, n: int) -> Step:
    token = (piece_id(text), text, -0.0001, False)
    return Step(token, [token] * n if n else None, "marker")


def _one(
    prompt: Prompt, p: Parameters, seed: int, max_new: int, config: SimConfig, grammar: GrammarSampler | None
) -> Generation:
    return generate(
        prompt, p, seed=seed, max_new_tokens=max_new, min_output_tokens=config.min_output_tokens,
        max_output_tokens=config.max_output_tokens, grammar=grammar,
    )  # fmt: skip


def _steps(gen: Generation, part: str) -> list[Step]:
    tops = gen.top_tokens
    return [Step(t, tops[i] if tops is not None else None, part) for i, t in enumerate(gen.tokens) if not t[3]]


def run_choice(
    index: int, prompt: Prompt, prompt_tokens: int, p: Parameters, seed: int, max_new: int,
    config: SimConfig, grammar: GrammarSampler | None,
) -> Output:  # fmt: skip
    steps: list[Step] = []
    used = 0
    n_top = p.top_n_tokens or 0
    if config.reasoning:
        thinking = Prompt([*prompt.pieces, THINK_OPEN], prompt.text + THINK_OPEN)
        think = _one(thinking, p.model_copy(update={"stop": [], "grammar": None}), seed, max_new - 1, config, None)
        steps = [_marker(THINK_OPEN, n_top), *_steps(think, "think")]
        used = 1 + len(think.tokens)  # <think>, the thoughts, and </think> in place of the EOS
        if think.finish_reason == "length" or used >= max_new:
            return Output(index, prompt_tokens, steps, min(used, max_new), "length", None)
        steps.append(_marker(THINK_CLOSE, n_top))
    gen = _one(prompt, p, seed, max_new - used, config, grammar)
    steps += _steps(gen, "answer")
    stop = None
    if gen.finish_reason == "stop_sequence":
        stop = next(s for s in p.stop if gen.text.endswith(s))
    return Output(index, prompt_tokens, steps, used + len(gen.tokens), gen.finish_reason, stop)


def run(job: Job, planned: Planned, config: SimConfig) -> list[Output]:
    """Every choice: ``n`` per prompt (choice index = prompt position * n + sample). A sampled request without
    a seed draws one per choice; with a seed, choice i uses seed + i."""
    p = job.params
    sampling = p.effectively_sampling
    outputs = []
    for k, prompt in enumerate(planned.prompts):
        for i in range(job.n):
            if not sampling:
                seed = 0
            elif p.seed is not None:
                seed = (p.seed + i) & _U64
            else:
                seed = draw_seed()
            outputs.append(
                run_choice(
                    k * job.n + i, prompt, planned.prompt_tokens[k], p, seed, planned.max_new[k], config,
                    planned.grammar,
                )
            )  # fmt: skip
    return outputs
