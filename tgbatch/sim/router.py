"""The TGI router's own logic, without HTTP: the concurrency semaphore, validation in the router's order
(``tgbatch.validation`` plus the server's grammar compilation), and running the model for each best_of branch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pydantic

from tgbatch.backends.tgi.rules import (
    DESERIALIZE_PREFIX,
    Limits,
    Parameters,
    check_inputs,
    check_parameters,
    parameters_from_wire,
)
from tgbatch.errors import OverloadedError, ValidationError
from tgbatch.sim.config import SimConfig
from tgbatch.sim.grammar import compile_grammar
from tgbatch.sim.model import Generation, GrammarSampler, Prompt, draw_seed, generate, prompt_of

OVERLOADED = "Model is overloaded"


def overloaded() -> OverloadedError:
    return OverloadedError(OVERLOADED, status_code=429, error_type="overloaded")


@dataclass(slots=True)
class Plan:
    """A request that passed validation: what the model will run."""

    inputs: str
    params: Parameters
    prompt: Prompt
    input_length: int
    max_new_tokens: int
    grammar: GrammarSampler | None


class Router:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.limits = Limits(
            max_best_of=config.max_best_of,
            max_stop_sequences=config.max_stop_sequences,
            max_top_n_tokens=config.max_top_n_tokens,
            max_input_tokens=config.max_input_tokens,
            max_total_tokens=config.max_total_tokens,
        )
        #: permits taken from the concurrency semaphore (one event loop: a plain counter is enough)
        self.in_use = 0

    def try_acquire(self, n: int = 1) -> bool:
        """Take ``n`` permits or none: best_of branches each need one, and one refusal fails the request."""
        if self.in_use + n > self.config.max_concurrent_requests:
            return False
        self.in_use += n
        return True

    def release(self, n: int = 1) -> None:
        self.in_use -= n

    @staticmethod
    def parameters(body: dict[str, Any]) -> Parameters:
        """The request's parameters after serde. A body without ``parameters`` gets TGI's
        ``default_parameters()``, which turns ``do_sample`` on."""
        if "parameters" not in body:
            return Parameters(do_sample=True)
        try:
            return parameters_from_wire(body["parameters"])
        except pydantic.ValidationError as exc:
            # only reachable for numbers serde would refuse too (e.g. 1e400 overflowing to inf)
            err = exc.errors()[0]
            name = ".".join(str(x) for x in err["loc"])
            raise ValidationError(
                f"{DESERIALIZE_PREFIX}parameters.{name}: number out of range", error_type=None
            ) from exc

    def validate(self, inputs: str, p: Parameters) -> Plan:
        """validation.rs steps 1-15, in order. Raises ``ValidationError`` with TGI's message."""
        check_parameters(p, self.limits)
        prompt, full_length = prompt_of(inputs, p.truncate)
        input_length = check_inputs(inputs, p, self.limits, full_length)
        assert input_length is not None
        # step 15: check_grammar's rules (via grammar_schema) plus the metaschema check, which the router runs
        # between them, and the compilation
        grammar = compile_grammar(p.grammar) if p.grammar is not None else None
        if p.max_new_tokens is not None:
            max_new = p.max_new_tokens
        else:
            max_new = self.config.max_total_tokens - input_length
        return Plan(inputs, p, prompt, input_length, max_new, grammar)

    def run(self, plan: Plan, branches: int) -> list[Generation]:
        """Generate ``branches`` sequences; the first returned is the best (highest mean logprob, first on
        ties), the others follow in branch order, as TGI's ``generate_best_of`` returns them."""
        p = plan.params
        sampling = p.effectively_sampling
        gens = [
            generate(
                plan.prompt,
                p,
                # greedy decoding ignores the seed: skip drawing one
                seed=p.seed if p.seed is not None else draw_seed() if sampling else 0,
                max_new_tokens=plan.max_new_tokens,
                min_output_tokens=self.config.min_output_tokens,
                max_output_tokens=self.config.max_output_tokens,
                grammar=plan.grammar,
            )
            for branch in range(branches)
        ]
        if branches == 1:
            return gens
        best = max(range(branches), key=lambda i: (gens[i].mean_logprob, -i))
        return [gens[best]] + [g for i, g in enumerate(gens) if i != best]
