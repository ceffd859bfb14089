"""Seeded token sampling that gives each row of a batch its own random stream.

`generate()` samples a whole batch from torch's global generator, so a row's text would depend
on its neighbours. Here every row has its own `torch.Generator` seeded from its invocation, and
padding is masked, so a batch gives the same tokens as running each row alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from genarun.models.structured import RowConstraint


def cache_argument(model: Any) -> str:
    """The name under which the model's forward takes and returns its KV cache: `cache` in
    recent transformers (which deprecated `past_key_values`: passing it printed a
    FutureWarning on every run), `past_key_values` in older versions and remote-code models."""
    import inspect

    try:
        parameters = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in parameters else "past_key_values"


def row_generators(seeds: Sequence[int], device: str) -> list[Any]:
    """One generator per row, on the device where sampling happens."""
    import torch

    gen_device = "cpu" if device.startswith("mps") else device
    return [torch.Generator(device=gen_device).manual_seed(int(seed) % 2**63) for seed in seeds]


def pick_tokens(
    logits: Any,
    generators: Sequence[Any],
    temperature: float,
    *,
    banned: Sequence[int] = (),
    active: Sequence[bool] | None = None,
    allowed: Any = None,
) -> Any:
    """Next token per row: argmax when temperature is 0, else a draw from that row's generator;
    `allowed` (bool, rows x vocabulary) limits each row to a grammar's tokens."""
    import torch

    logits = logits.float()
    if banned:
        logits[:, list(banned)] = float("-inf")
    if allowed is not None:
        logits.masked_fill_(~allowed, float("-inf"))
    chosen = logits.argmax(dim=-1)
    if temperature <= 0:
        return chosen
    for i, generator in enumerate(generators):
        if active is not None and not active[i]:
            continue  # a finished row draws nothing, as it would not run at all alone
        probs = torch.softmax(logits[i] / temperature, dim=-1)
        if generator.device != probs.device:
            probs = probs.to(generator.device)
        chosen[i] = torch.multinomial(probs, 1, generator=generator).to(chosen.device)[0]
    return chosen


def sample_causal(
    model: Any,
    prompts: Sequence[Sequence[int]],
    seeds: Sequence[int],
    *,
    max_new_tokens: int,
    temperature: float,
    eos_ids: set[int],
    pad_id: int,
    min_new_tokens: int = 0,
    constraints: Sequence[RowConstraint | None] | None = None,
) -> list[list[int]]:
    """Decode a batch of token-id prompts with a KV cache; returns each row's new tokens.
    A row with a constraint takes only the tokens its grammar allows, and ends its value within
    the budget (genarun.models.structured)."""
    import torch

    device = next(model.parameters()).device
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, prompt in enumerate(prompts):  # left padding: every row's next token is at the end
        if prompt:
            input_ids[i, width - len(prompt) :] = torch.tensor(list(prompt), dtype=torch.long)
            mask[i, width - len(prompt) :] = 1
    input_ids, mask = input_ids.to(device), mask.to(device)
    # Positions count real tokens only, so a padded row sees the positions it would see alone.
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    generators = row_generators(seeds, str(device))
    outputs: list[list[int]] = [[] for _ in prompts]
    active = [True] * len(prompts)
    past = None
    cache_arg = cache_argument(model)
    step_ids, step_positions = input_ids, positions
    with torch.inference_mode():
        for step in range(max_new_tokens):
            out = model(
                input_ids=step_ids,
                attention_mask=mask,
                position_ids=step_positions,
                use_cache=True,
                **{cache_arg: past},
            )
            past = getattr(out, cache_arg)
            banned = sorted(eos_ids) if step < min_new_tokens else ()
            logits = out.logits[:, -1, :]
            allowed = _allowed(constraints, active, logits) if constraints else None
            tokens = pick_tokens(
                logits, generators, temperature, banned=banned, active=active, allowed=allowed
            )
            if constraints:
                left_after = max_new_tokens - step - 1
                for i, constraint in enumerate(constraints):
                    if constraint is not None and active[i]:
                        tokens[i] = constraint.choose(int(tokens[i]), left_after)
            for i, token in enumerate(tokens.tolist()):
                if not active[i]:
                    continue
                if token in eos_ids:
                    active[i] = False
                else:
                    outputs[i].append(token)
            if not any(active):
                break
            step_ids = tokens[:, None]
            step_positions = step_positions[:, -1:] + 1
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=-1)
    return outputs


def _allowed(
    constraints: Sequence[RowConstraint | None], active: Sequence[bool], logits: Any
) -> Any:
    """The rows' grammar masks as one bool tensor shaped like `logits` (unconstrained and
    finished rows allow everything; ids past the tokenizer's vocabulary are never allowed)."""
    import numpy as np
    import torch

    rows, width = logits.shape
    mask = np.ones((rows, width), dtype=bool)
    for i, constraint in enumerate(constraints):
        if constraint is not None and active[i]:
            row = constraint.allowed()
            mask[i, : len(row)] = row[:width]
            mask[i, len(row) :] = False
    return torch.from_numpy(mask).to(logits.device)


class GreedySteps:
    """A logits processor for greedy `generate()`: bans end-of-sequence tokens until
    `min_new_tokens`, and counts steps (to split new tokens from the prompt). Unlike
    RowSampler it never reads back from the device."""

    def __init__(self, eos_ids: set[int], min_new_tokens: int = 0) -> None:
        self.eos_ids = sorted(eos_ids)
        self.min_new_tokens = min_new_tokens
        self.steps = 0
        self.banned: Any = None  # eos_ids as an index tensor on the scores' device

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self.steps < self.min_new_tokens and self.eos_ids:
            if self.banned is None or self.banned.device != scores.device:
                import torch

                # Made once: indexing with a Python list copies it to the GPU at every step,
                # and that copy waits for the step's kernels.
                self.banned = torch.tensor(self.eos_ids, device=scores.device)
            scores.index_fill_(1, self.banned, float("-inf"))
        self.steps += 1
        return scores


class RowSampler:
    """A logits processor for `generate()` that picks each row's token with its own generator.

    It returns scores with every token but the chosen one at -inf, so `generate` in greedy mode
    takes exactly the chosen token. It also counts steps, to split new tokens from the prompt.
    """

    def __init__(
        self,
        seeds: Sequence[int],
        device: str,
        temperature: float,
        *,
        eos_ids: set[int],
        min_new_tokens: int = 0,
    ) -> None:
        self.generators = row_generators(seeds, device)
        self.temperature = temperature
        self.eos_ids = sorted(eos_ids)
        self.min_new_tokens = min_new_tokens
        self.steps = 0
        self.finished = [False] * len(seeds)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        if self.steps > 0:  # rows whose last token was eos are done: stop drawing for them
            for i, token in enumerate(input_ids[:, -1].tolist()):
                if token in self.eos_ids:
                    self.finished[i] = True
        banned = self.eos_ids if self.steps < self.min_new_tokens else []
        active = [not done for done in self.finished]
        tokens = pick_tokens(
            scores, self.generators, self.temperature, banned=banned, active=active
        )
        self.steps += 1
        forced = torch.full_like(scores, float("-inf"))
        forced[torch.arange(scores.shape[0], device=scores.device), tokens.to(scores.device)] = 0.0
        return forced
