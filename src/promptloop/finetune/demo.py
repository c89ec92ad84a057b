"""Synthetic data for demos, tests and benchmarks of fine-tuning: a text-to-JSON extraction task
that the base model gets wrong and a small LoRA learns in about a minute on a CPU.

    examples = extraction_examples(200, seed=0)
    examples[0].messages[-1]["content"]
    # '{"item":"mug","qty":5,"color":"red","name":"Ana","city":"Lisbon"}'
"""

from __future__ import annotations

import json
import random

from promptloop.finetune.lora import Example

# Short on purpose: every token of it is computed again in every training step.
SYSTEM_PROMPT = "Extract the order as JSON: item, qty, color, name, city."

ITEMS = ("mug", "lamp", "chair", "book", "pen", "bag", "shirt", "plate", "vase", "clock", "towel")
COLORS = ("red", "blue", "green", "black", "white", "yellow", "pink", "grey")
NAMES = ("Ana", "Tom", "Mia", "Liam", "Sara", "Omar", "Yuki", "Nina", "Leo", "Eva", "Ivan", "Zoe")
CITIES = ("Lisbon", "Oslo", "Berlin", "Paris", "Madrid", "Rome", "Dublin", "Vienna", "Prague")
TEMPLATES = (
    "Order {qty} {color} {items} for {name} in {city}",
    "{name} from {city} wants {qty} {color} {items}.",
    "Please send {qty} {color} {items} to {name} in {city}.",
    "Ship {qty} {color} {items} to {name}, {city}.",
    "{name} ({city}) ordered {qty} {color} {items}",
)


def extraction_prompt(text: str) -> list[dict[str, str]]:
    """The prompt messages for one order text (the examples' messages without the answer)."""
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": text}]


def extraction_examples(n: int, seed: int = 0) -> list[Example]:
    """`n` order texts with their JSON answers (compact, keys in a fixed order); the same `n`
    and `seed` give the same examples."""
    rng = random.Random(seed)
    examples = []
    for _ in range(n):
        item, qty = rng.choice(ITEMS), rng.randint(1, 9)
        order = {
            "item": item,
            "qty": qty,
            "color": rng.choice(COLORS),
            "name": rng.choice(NAMES),
            "city": rng.choice(CITIES),
        }
        text = rng.choice(TEMPLATES).format(items=item if qty == 1 else f"{item}s", **order)
        answer = json.dumps(order, separators=(",", ":"))
        examples.append(Example.from_call(extraction_prompt(text), answer))
    return examples
