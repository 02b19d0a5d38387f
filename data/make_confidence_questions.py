"""Write data/confidence_questions.jsonl: short jobs with gold answers that a program can grade.

The set bench/confidence.py runs through the real local model (and the fake cloud servers): arithmetic, short
factual questions, extraction, sentiment labels, grammar fixes and "do these two statements agree?" pairs. Every
item carries its grader (nodes of bench/confidence.py read them):

- ``number``: the last number in the answer equals ``gold``;
- ``contains``: the answer contains one of ``gold`` (case-insensitive) and none of ``wrong``;
- ``short``: as ``contains``, and the answer has at most ``max_words`` words (an extraction, not an echo);
- ``label``: the first of ``labels`` the answer names is ``gold``.

Items are shuffled by a fixed seed and numbered in that order, which is the order ("time") in which the bench
feeds their outcomes back. Deterministic: the same file every run.

It also writes data/confidence_cloud_answers.jsonl: the answers the fake Gemini server replays in the bench.
They are written here, not recorded from Google (no keys, no network): right for 85% of the questions (drawn by a
fixed seed), a plausible wrong answer otherwise, each with a stated confidence drawn from 0.8-0.97 *independently*
of being right - the near-constant over-confidence published studies find in verbalised confidence - so no link
between certainty and truth is built in.

Usage: PYTHONPATH=. python data/make_confidence_questions.py [--out data/confidence_questions.jsonl]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

SEED = 16
OUT = Path(__file__).resolve().parent / "confidence_questions.jsonl"
CLOUD = Path(__file__).resolve().parent / "confidence_cloud_answers.jsonl"
CLOUD_ACCURACY = 0.85

CAPITALS = {
    "India": "New Delhi", "France": "Paris", "Japan": "Tokyo", "Germany": "Berlin", "Italy": "Rome",
    "Spain": "Madrid", "Egypt": "Cairo", "Kenya": "Nairobi", "Canada": "Ottawa", "Australia": "Canberra",
    "Brazil": "Brasilia", "Russia": "Moscow", "China": "Beijing", "Thailand": "Bangkok", "Nepal": "Kathmandu",
    "Bangladesh": "Dhaka", "Sri Lanka": "Colombo", "Pakistan": "Islamabad", "Turkey": "Ankara",
    "Portugal": "Lisbon", "Greece": "Athens", "Norway": "Oslo", "Sweden": "Stockholm", "Poland": "Warsaw",
    "Argentina": "Buenos Aires", "Mexico": "Mexico City", "Peru": "Lima", "Iran": "Tehran", "Iraq": "Baghdad",
    "Vietnam": "Hanoi",
}  # fmt: skip
STATE_CAPITALS = {
    "Telangana": "Hyderabad", "Karnataka": "Bengaluru|Bangalore", "Tamil Nadu": "Chennai",
    "Maharashtra": "Mumbai", "West Bengal": "Kolkata", "Kerala": "Thiruvananthapuram|Trivandrum",
    "Gujarat": "Gandhinagar", "Rajasthan": "Jaipur", "Bihar": "Patna", "Punjab": "Chandigarh",
    "Odisha": "Bhubaneswar", "Uttar Pradesh": "Lucknow", "Madhya Pradesh": "Bhopal", "Assam": "Dispur",
}  # fmt: skip
FACTS = [
    ("How many days are in a week?", "7", "number"),
    ("How many months are in a year?", "12", "number"),
    ("How many hours are in a day?", "24", "number"),
    ("How many minutes are in an hour?", "60", "number"),
    ("How many legs does a spider have?", "8", "number"),
    ("How many continents are there?", "7", "number"),
    ("How many sides does a triangle have?", "3", "number"),
    ("How many sides does a hexagon have?", "6", "number"),
    ("How many players are on a cricket team on the field?", "11", "number"),
    ("How many days are in a leap year?", "366", "number"),
    ("Who wrote Hamlet?", "Shakespeare", "contains"),
    ("Who wrote the Indian national anthem?", "Tagore", "contains"),
    ("Who was the first Prime Minister of India?", "Nehru", "contains"),
    ("Who painted the Mona Lisa?", "Leonardo|da Vinci", "contains"),
    ("Who developed the theory of relativity?", "Einstein", "contains"),
    ("What is the largest planet in the solar system?", "Jupiter", "contains"),
    ("Which planet is known as the Red Planet?", "Mars", "contains"),
    ("What is the chemical symbol for gold?", "Au", "contains"),
    ("What gas do plants absorb from the air?", "carbon dioxide|CO2", "contains"),
    ("What is the boiling point of water in degrees Celsius?", "100", "number"),
    ("What is the freezing point of water in degrees Celsius?", "0", "number"),
    ("What is the currency of India?", "rupee", "contains"),
    ("What is the currency of Japan?", "yen", "contains"),
    ("What is the largest ocean on Earth?", "Pacific", "contains"),
    ("What is the longest river in India?", "Ganga|Ganges", "contains"),
    ("In which city is the Charminar?", "Hyderabad", "contains"),
    ("In which city is the Taj Mahal?", "Agra", "contains"),
    ("In which city is the Eiffel Tower?", "Paris", "contains"),
    ("What language is mostly spoken in Telangana?", "Telugu", "contains"),
    ("Which body conducts elections in India?", "Election Commission", "contains"),
]
WARDS = ["Malakpet", "Amberpet", "Jubilee Hills", "Khairatabad", "Secunderabad", "Goshamahal", "Kukatpally", "Uppal"]
PEOPLE = ["Ravi Goud", "Lakshmi Prasanna", "Syed Farooq", "Meena Kumari", "Venkat Rao", "Anjali Reddy"]
PARTIES = ["BRS", "Congress", "BJP", "AIMIM"]
EXTRACT_TEMPLATES = [
    ("ward", "The rally in {W} drew {N} people on Sunday.", "W"),
    ("ward", "Water supply in {W} will be cut for two days next week.", "W"),
    ("ward", "Voters in {W} complained about road repairs at the meeting.", "W"),
    ("person", "{X} addressed the volunteers at the party office yesterday.", "X"),
    ("person", "The candidate {X} filed her nomination papers on Monday.", "X"),
    ("party", "{P} announced its manifesto at a press conference.", "P"),
    ("number", "The survey reached {N} households across the ward.", "N"),
    ("number", "Officials counted {N} polling booths in the constituency.", "N"),
]
SENTIMENT = [
    ("The new flyover has made my commute so much better.", "positive"),
    ("Garbage has not been collected in our street for two weeks.", "negative"),
    ("The candidate listened to us and fixed the streetlights quickly.", "positive"),
    ("The roads are full of potholes and nobody cares.", "negative"),
    ("I am very happy with the clean water supply this year.", "positive"),
    ("The rally was a complete waste of time.", "negative"),
    ("Our councillor is helpful and always answers calls.", "positive"),
    ("Power cuts every evening are ruining our business.", "negative"),
    ("The free health camp was wonderful for the elderly.", "positive"),
    ("The bus service has become unreliable and crowded.", "negative"),
    ("Great job on the new park, the children love it.", "positive"),
    ("The drainage overflowed again and flooded our homes.", "negative"),
    ("The volunteers were friendly and very well organised.", "positive"),
    ("Prices keep rising and the government does nothing.", "negative"),
    ("The school renovation turned out beautiful.", "positive"),
    ("The hospital staff were rude and the wait was endless.", "negative"),
    ("I love the new library in our colony.", "positive"),
    ("Nobody from the party has visited us in five years.", "negative"),
    ("The metro extension is a fantastic improvement.", "positive"),
    ("Traffic near the market is a nightmare every day.", "negative"),
]
GRAMMAR = [
    ("The candidate have visited the ward yesterday.", "has visited|visited the ward yesterday"),
    ("The voters was angry about the water supply.", "voters were"),
    ("She don't support the new policy.", "doesn't support|does not support"),
    ("They goes to the rally every Sunday.", "They go"),
    ("The party have announced it's manifesto.", "its manifesto"),
    ("He were the best speaker at the meeting.", "He was"),
    ("We was waiting for the results all night.", "We were"),
    ("The councillor do not answer our calls.", "does not|doesn't"),
    ("There is many problems in our colony.", "There are"),
    ("The roads is full of potholes.", "roads are"),
    ("I has voted in every election.", "I have"),
    ("The volunteers has finished the survey.", "volunteers have"),
]
PAIRS = [
    ("Police confirmed the rally.", "Police cancelled the rally.", "no"),
    ("The rally will go ahead on Sunday.", "The rally is on for Sunday.", "yes"),
    ("Turnout was 62 percent.", "Turnout was 48 percent.", "no"),
    ("Turnout was 62 percent.", "Sixty-two percent of voters turned out.", "yes"),
    ("The candidate won the seat.", "The candidate lost the seat.", "no"),
    ("The candidate won the seat.", "The seat was won by the candidate.", "yes"),
    ("Water supply will be cut on Monday.", "There will be no water on Monday.", "yes"),
    ("Water supply will be cut on Monday.", "Water supply will continue as normal on Monday.", "no"),
    ("The party increased its vote share.", "The party's vote share rose.", "yes"),
    ("The party increased its vote share.", "The party's vote share fell.", "no"),
    ("The meeting starts at 5 pm.", "The meeting begins at five in the evening.", "yes"),
    ("The meeting starts at 5 pm.", "The meeting starts at 8 pm.", "no"),
    ("Congress leads in Malakpet.", "Congress is ahead in Malakpet.", "yes"),
    ("Congress leads in Malakpet.", "Congress trails in Malakpet.", "no"),
    ("The minister denied the allegations.", "The minister rejected the allegations.", "yes"),
    ("The minister denied the allegations.", "The minister admitted the allegations.", "no"),
    ("The road repairs are complete.", "The road repairs are finished.", "yes"),
    ("The road repairs are complete.", "The road repairs have not started.", "no"),
    ("The survey covered 500 homes.", "Five hundred homes were surveyed.", "yes"),
    ("The survey covered 500 homes.", "The survey covered 50 homes.", "no"),
]


def _number_items(rng: random.Random) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for _ in range(40):
        a, b = rng.randint(2, 30), rng.randint(2, 30)
        items.append({"kind": "arithmetic", "prompt": f"What is {a} + {b}?", "grader": "number", "gold": str(a + b)})
    for _ in range(30):
        a, b = rng.randint(2, 12), rng.randint(2, 12)
        items.append(
            {"kind": "arithmetic", "prompt": f"What is {a} times {b}?", "grader": "number", "gold": str(a * b)}
        )
    for _ in range(30):
        a = rng.randint(20, 90)
        b = rng.randint(2, a - 5)
        items.append(
            {"kind": "arithmetic", "prompt": f"What is {a} minus {b}?", "grader": "number", "gold": str(a - b)}
        )
    return items


def _factual_items() -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for country, capital in CAPITALS.items():
        items.append(
            {"kind": "factual", "prompt": f"What is the capital of {country}?", "grader": "contains", "gold": capital}
        )
    for state, capital in STATE_CAPITALS.items():
        prompt = f"What is the capital of the Indian state of {state}?"
        items.append({"kind": "factual", "prompt": prompt, "grader": "contains", "gold": capital})
    for question, gold, grader in FACTS:
        items.append({"kind": "factual", "prompt": question, "grader": grader, "gold": gold})
    return items


def _extraction_items(rng: random.Random) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for i in range(64):
        what, template, slot = EXTRACT_TEMPLATES[i % len(EXTRACT_TEMPLATES)]
        values = {
            "W": rng.choice(WARDS),
            "X": rng.choice(PEOPLE),
            "P": rng.choice(PARTIES),
            "N": str(rng.randint(120, 9000)),
        }
        sentence = template.format(**values)
        prompt = f'Extract the {what} from this sentence and reply with it only: "{sentence}"'
        items.append({"kind": "extraction", "prompt": prompt, "grader": "short", "gold": values[slot], "max_words": 6})
    return items


def _label_items() -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for text, label in SENTIMENT:
        for form in ('Is this comment positive or negative? "{t}"', "Label the sentiment (positive or negative): {t}"):
            items.append(
                {"kind": "sentiment", "prompt": form.format(t=text), "grader": "label", "gold": label,
                 "labels": ["positive", "negative"]}
            )  # fmt: skip
    for wrong, fixed in GRAMMAR:
        for form in ('Fix the grammar: "{t}"', "Correct this sentence: {t}"):
            items.append({"kind": "grammar", "prompt": form.format(t=wrong), "grader": "contains", "gold": fixed})
    for a, b, label in PAIRS:
        for form in (
            'Do these two statements agree? A: "{a}" B: "{b}" Answer yes or no.',
            "Statement 1: {a} Statement 2: {b} Do they say the same thing? Answer yes or no.",
        ):
            items.append(
                {"kind": "pair", "prompt": form.format(a=a, b=b), "grader": "label", "gold": label,
                 "labels": ["yes", "no"]}
            )  # fmt: skip
    return items


def build() -> list[dict[str, Any]]:
    """Return the question set, shuffled and numbered."""
    rng = random.Random(SEED)
    items = _number_items(rng) + _factual_items() + _extraction_items(rng) + _label_items()
    rng.shuffle(items)
    return [{"id": i, **item} for i, item in enumerate(items)]


def cloud_answer(item: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Write the fake cloud model's answer to one item: right or plausibly wrong, with a stated confidence."""
    right = rng.random() < CLOUD_ACCURACY
    gold = str(item["gold"]).split("|")[0]
    if item["grader"] == "number":
        value = gold if right else str(int(gold) + rng.choice((-2, -1, 1, 2, 10)))
        text = f"The answer is {value}."
    elif item["grader"] == "label":
        labels = [label for label in item["labels"] if label != gold]
        text = (gold if right else labels[0]).capitalize() + "."
    elif right and item["kind"] == "grammar":
        text = f"The corrected sentence uses '{gold}'."
    elif right:
        text = f"{gold}." if item["grader"] == "short" else f"It is {gold}."
    else:
        text = "I am not certain; it may be Mumbai." if item["kind"] == "factual" else "The sentence is unclear."
    confidence = round(rng.uniform(0.8, 0.97), 2)
    return {"id": item["id"], "text": f"{text}\nConfidence: {confidence:.2f}", "right_by_construction": right}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    items = build()
    args.out.write_text("".join(json.dumps(item) + "\n" for item in items))
    rng = random.Random(SEED + 1)
    CLOUD.write_text("".join(json.dumps(cloud_answer(item, rng)) + "\n" for item in items))
    print(f"wrote {len(items)} questions to {args.out} and the fake cloud's answers to {CLOUD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
