"""Regenerate ``examples/prompts.jsonl``: a few hundred varied instruction prompts for the quickstart job.

    python3 examples/make_prompts.py > examples/prompts.jsonl

Deterministic (fixed seed), so the committed file and a regenerated one are identical.
"""

from __future__ import annotations

import json
import random

TASKS = {
    "explain": [
        "Explain {topic} to a curious ten-year-old.",
        "Explain the main idea behind {topic} in three sentences.",
        "What is a common misconception about {topic}, and what is actually true?",
    ],
    "summarize": [
        "Summarize the history of {topic} in one paragraph.",
        "Give a five-bullet summary of what a beginner should know about {topic}.",
    ],
    "creative": [
        "Write a haiku about {topic}.",
        "Write a limerick that mentions {topic}.",
        "Write the opening line of a mystery novel involving {topic}.",
    ],
    "compare": [
        "Compare {topic} and {other}: how are they similar, and how do they differ?",
        "Which matters more for a small city, {topic} or {other}? Argue both sides briefly.",
    ],
    "howto": [
        "List the steps to get started with {topic}, from zero, in a weekend.",
        "What tools or materials do I need to learn about {topic} at home?",
    ],
    "quiz": [
        "Write three multiple-choice questions about {topic}, with the answers.",
        "Ask me one hard question about {topic}, then explain the answer.",
    ],
}

TOPICS = [
    "photosynthesis",
    "black holes",
    "the water cycle",
    "plate tectonics",
    "compound interest",
    "vaccines",
    "the printing press",
    "machine learning",
    "sourdough baking",
    "beekeeping",
    "the Roman aqueducts",
    "solar panels",
    "public libraries",
    "jazz improvisation",
    "chess openings",
    "coral reefs",
    "the immune system",
    "urban gardening",
    "electric bicycles",
    "the Silk Road",
    "volcanoes",
    "origami",
    "the stock market",
    "recycling plastics",
    "the human heart",
    "lighthouses",
    "tides",
    "the metric system",
    "bird migration",
    "cryptography",
    "rainbows",
    "glaciers",
    "sleep",
    "the Olympic Games",
    "mushrooms",
    "wind turbines",
    "typography",
    "the moon landing",
    "tea ceremonies",
    "rivers and deltas",
]

LANGUAGES = ["English", "English", "English", "French", "Spanish", "German"]


def main() -> None:
    rng = random.Random(20240601)
    rows = []
    n = 0
    for category, templates in TASKS.items():
        for template in templates:
            for topic in rng.sample(TOPICS, 20):
                other = rng.choice([t for t in TOPICS if t != topic])
                n += 1
                rows.append(
                    {
                        "id": f"q{n:04d}",
                        "category": category,
                        "topic": topic,
                        "language": rng.choice(LANGUAGES),
                        "instruction": template.format(topic=topic, other=other),
                    }
                )
    rng.shuffle(rows)
    for row in rows:
        print(json.dumps(row, ensure_ascii=False))


if __name__ == "__main__":
    main()
