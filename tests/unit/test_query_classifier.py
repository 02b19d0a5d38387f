"""The trained query classifier: behaviour on known queries, parity with sklearn, reproducible artifact."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from nodes.policy.query_classifier import (
    COMPLEXITY_LABELS,
    DEFAULT_MODEL_PATH,
    TASK_LABELS,
    ArtifactError,
    QueryClassifier,
    QueryNeeds,
    default_classifier,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DATASET = REPO_ROOT / "data" / "queries.jsonl"
TRAIN_SCRIPT = REPO_ROOT / "data" / "train_classifier.py"


@pytest.fixture(scope="module")
def classifier() -> QueryClassifier:
    return QueryClassifier.load()


def _dataset() -> list[dict[str, Any]]:
    return [json.loads(line) for line in DATASET.read_text(encoding="utf-8").splitlines() if line.strip()]


# The behaviours the router depends on; none of these texts is in the dataset.
REQUIRED: list[tuple[str, dict[str, Any]]] = [
    ("Is the rally at Nizam College grounds still on?", {"fresh": True}),
    ("What should I know before the town hall?", {"fresh": True}),
    (
        'Translate this leaflet into Telugu: "Clean streets, safe lanes, a corporator who answers."',
        {"fresh": False, "complexity": "simple", "task": "translation"},
    ),
    (
        "Translate this leaflet into Telugu: ...",
        {"fresh": False, "complexity": "simple", "task": "translation"},
    ),
    ("Design a 12-week mobilisation plan for Jubilee Hills", {"fresh": False, "complexity": "complex"}),
    (
        "Summarise this speech in 3 bullets: ...",
        {"fresh": False, "complexity": "simple", "task": "summary"},
    ),
    (
        'Summarise this speech in 3 bullets: "Friends, the drains in this colony have been broken for years. '
        'I will fix them in six months, hold a public meeting every month and publish every rupee spent."',
        {"fresh": False, "complexity": "simple", "task": "summary"},
    ),
    ("Who is leading in Serilingampally right now?", {"fresh": True}),
    (
        "Tag the sentiment of these 20 tweets",
        {"fresh": False, "complexity": "simple", "task": "sentiment_tagging"},
    ),
]


@pytest.mark.parametrize(("text", "expected"), REQUIRED, ids=[t[:40] for t, _ in REQUIRED])
def test_required_behaviour(classifier: QueryClassifier, text: str, expected: dict[str, Any]) -> None:
    needs = classifier.predict(text)
    if "fresh" in expected:
        assert (needs.fresh_p > 0.5) is expected["fresh"], needs
    if "complexity" in expected:
        assert needs.complexity == expected["complexity"], needs.complexity_p
    if "task" in expected:
        assert needs.task == expected["task"], needs.task_p


# Hand-written outside the dataset and never trained on. The first 33 were used to find gaps worth
# filling in the dataset; the other 70 were written before the last two dataset batches and scored blind.
# Individual misses are expected (some labels are debatable); the aggregate guards generalisation.
# (fresh, complexity, task, text)
UNSEEN: list[tuple[int, str, str, str]] = [
    (1, "simple", "fact_lookup", "candidate reached venue?"),
    (1, "simple", "fact_lookup", "Aaj rally ke liye kitne log aaye hain, koi estimate?"),
    (1, "moderate", "opposition_research", "Has the Kukatpally rival said anything about our booth agents?"),
    (1, "moderate", "briefing", "How are the shopkeepers in Abids feeling about the campaign?"),
    (
        1,
        "moderate",
        "crisis",
        "People are saying our candidate's car hit a scooter near Mehdipatnam. What's "
        "out there and how do we handle it?",
    ),
    (1, "simple", "fact_lookup", "did the police give us the ok for sunday"),
    (
        1,
        "complex",
        "scenario",
        "Taking this morning's tracker into account, should we move the final rally from "
        "Malakpet to Kukatpally? Think it through.",
    ),
    (1, "moderate", "summary", "What were the headlines about us this morning? Short summary please."),
    (1, "moderate", "sentiment_tagging", "Are people on Instagram happy with the candidate's new video?"),
    (
        1,
        "moderate",
        "messaging",
        "The rival just accused us of rigging the tender. Draft a two-line response for our spokesperson.",
    ),
    (1, "simple", "fact_lookup", "Is the polling booth at St. Ann's school open yet?"),
    (
        1,
        "moderate",
        "briefing",
        "Before the candidate meets the fishermen community at Hussain Sagar, what should he keep in mind?",
    ),
    (
        1,
        "moderate",
        "opposition_research",
        "hs the opp candidate in khairatabad said anythng about the metro delay",
    ),
    (0, "simple", "translation", 'Isko Urdu mein kar do: "Sunday ko free medical camp hai"'),
    (
        0,
        "simple",
        "extraction",
        'Pull the names and ages out of this list: "Ramesh 34, Fatima 29, Srinivas 51, Lakshmi 46"',
    ),
    (0, "simple", "summary", "tldr of the minutes i pasted above"),
    (0, "moderate", "messaging", "Give me four lines for a street play about voting rights."),
    (
        0,
        "complex",
        "scenario",
        "How should a challenger candidate plan the last 100 days in a division the party has never won?",
    ),
    (0, "simple", "sentiment_tagging", "In 10 comments ka mood batao, positive ya negative"),
    (
        0,
        "complex",
        "crisis",
        "Put together a playbook for handling a leaked audio clip, from verification through to public statement.",
    ),
    (0, "simple", "messaging", 'Make this sentence friendlier: "Residents must attend the meeting."'),
    (0, "simple", "fact_lookup", "What is the role of a booth level officer?"),
    (
        0,
        "moderate",
        "opposition_research",
        "What should we look for when reviewing a rival's nomination affidavit?",
    ),
    (
        0,
        "simple",
        "extraction",
        "Extract the amounts from this bill: tent Rs 12,000; sound Rs 8,500; chairs Rs 4,000",
    ),
    (0, "simple", "translation", 'What is "thank you for voting" in Urdu?'),
    (1, "moderate", "briefing", "whats the latest in old city, anything brewing?"),
    (1, "simple", "fact_lookup", "Have they announced which day the results come out?"),
    (1, "moderate", "crisis", "Humare banner jalaaye gaye Malakpet mein, news mein aaya kya?"),
    (
        0,
        "moderate",
        "briefing",
        "Turn these points into a crisp brief for the candidate: flooding last monsoon, "
        "no bus stop, women want streetlights.",
    ),
    (
        1,
        "complex",
        "opposition_research",
        "Has the rival's campaign changed strategy since the survey came out? Analyse "
        "their moves and what they signal.",
    ),
    (0, "simple", "summary", "Shorten this letter to three sentences."),
    (1, "simple", "fact_lookup", "result out?"),
    (
        0,
        "complex",
        "messaging",
        "Craft a narrative that ties our water, roads and safety promises into one story voters can repeat.",
    ),
    (1, "simple", "fact_lookup", "Is tomorrow's bike rally in Kukatpally going ahead in this weather?"),
    (1, "simple", "fact_lookup", "booth agents all in position?"),
    (1, "simple", "fact_lookup", "bhai Owaisi ki sabha shuru hui kya?"),
    (1, "simple", "fact_lookup", "wheres the candidate rn, reporters r asking"),
    (1, "moderate", "briefing", "What's the chatter among auto drivers in Malakpet about our promises?"),
    (1, "moderate", "briefing", "Kal Amberpet jaana hai, wahan ka haal chaal kya hai?"),
    (
        1,
        "moderate",
        "opposition_research",
        "Has the rival's campaign said anything about our candidate's hospital?",
    ),
    (1, "moderate", "opposition_research", "is the bjp candidate still attacking us on the garbage issue"),
    (
        1,
        "complex",
        "crisis",
        "There's a rumour our candidate is switching parties and workers are panicking. "
        "What's out there and what do we do?",
    ),
    (1, "moderate", "crisis", "Is the story about our volunteers getting paid still circulating?"),
    (
        1,
        "complex",
        "scenario",
        "With the survey showing a close race in Khairatabad, how should we rework the last ten days?",
    ),
    (
        1,
        "moderate",
        "messaging",
        "Write a reply to the opposition leader's comments on our manifesto this evening.",
    ),
    (1, "moderate", "summary", "What did the Telugu papers report about the debate? Brief summary please."),
    (1, "moderate", "sentiment_tagging", "How are voters reacting on Twitter to the CM's visit?"),
    (1, "simple", "fact_lookup", "Has the returning officer published the list of contesting candidates?"),
    (1, "simple", "fact_lookup", "Is the Tank Bund road open for our procession?"),
    (1, "moderate", "briefing", "Before the RWA meeting in Kondapur, what issues are residents raising?"),
    (1, "simple", "fact_lookup", "lead in round 3?"),
    (1, "moderate", "opposition_research", "What are the rival's volunteers telling voters door to door?"),
    (1, "simple", "fact_lookup", "Have the police allowed loudspeakers after 10 pm for the festival rally?"),
    (
        0,
        "simple",
        "translation",
        'Please translate into Telugu: "Drinking water tanker will come to your lane at 7 am."',
    ),
    (0, "simple", "translation", 'urdu mein likh do - "meeting at community hall, all welcome"'),
    (
        0,
        "simple",
        "summary",
        "Summarise these volunteer complaints in two bullets: late payments, no food at booths, no transport.",
    ),
    (0, "simple", "summary", "Is letter ka saar 2 line mein do"),
    (
        0,
        "simple",
        "extraction",
        'From this message, pull out the date, time and place of the meeting: "Meeting '
        'on 14th at 5 pm, Ameerpet community hall."',
    ),
    (0, "simple", "extraction", "grab all the phone numbers from the volunteer list i pasted"),
    (
        0,
        "simple",
        "sentiment_tagging",
        "Label these five comments as supportive or hostile to our candidate.",
    ),
    (0, "simple", "sentiment_tagging", "In messages mein kaun khush hai aur kaun naraz, tag kar do"),
    (
        0,
        "simple",
        "messaging",
        'Rewrite this poster text in simpler words: "Ensuring equitable distribution of civic amenities."',
    ),
    (
        0,
        "moderate",
        "messaging",
        "Write a short motivational message for booth agents the night before polling.",
    ),
    (0, "moderate", "messaging", "Youth ke liye ek Instagram caption likho jobs ke mudde pe"),
    (
        0,
        "complex",
        "scenario",
        "Create a plan to double our volunteer base in Amberpet over the next three months.",
    ),
    (
        0,
        "complex",
        "scenario",
        "What happens to our chances if the two rival parties merge before the next election? Explore the scenarios.",
    ),
    (0, "complex", "crisis", "Design a response protocol for fake news about our candidate on WhatsApp."),
    (
        0,
        "moderate",
        "opposition_research",
        "Which sections of a rival's nomination papers usually hide useful information?",
    ),
    (0, "simple", "fact_lookup", "What is a model code of conduct?"),
    (0, "simple", "fact_lookup", "Can a government employee be a polling agent?"),
    (
        0,
        "moderate",
        "briefing",
        "Make a short brief for the candidate from these notes: potholes, no bus stop, youth unemployment.",
    ),
    (
        0,
        "complex",
        "messaging",
        "Build our core campaign narrative for the Old City around dignity, jobs and services.",
    ),
    (
        0,
        "moderate",
        "scenario",
        "Estimate how many volunteers we need to cover 80 booths if each volunteer handles 250 voters.",
    ),
    (1, "simple", "fact_lookup", "tent up at the venue?"),
    (1, "simple", "fact_lookup", "Has the counting of postal ballots finished in Amberpet?"),
    (1, "simple", "fact_lookup", "Rally ke liye buses pahunchi kya Kukatpally se?"),
    (1, "simple", "fact_lookup", "is the mic permission sorted for tonite"),
    (1, "moderate", "briefing", "What are the traders in Abids saying about our parking promise?"),
    (1, "moderate", "briefing", "how's it looking in malakpet"),
    (
        1,
        "moderate",
        "opposition_research",
        "Has the rival candidate made any fresh allegations against our corporator?",
    ),
    (1, "moderate", "opposition_research", "what is the opp saying abt our water tanker plan"),
    (
        1,
        "complex",
        "crisis",
        "Reports say our posters were defaced with communal slogans overnight. What's known and how should we respond?",
    ),
    (
        1,
        "moderate",
        "crisis",
        "Humare candidate ke against jo complaint hui thi, uska kya hua? news mein hai kya?",
    ),
    (
        1,
        "complex",
        "scenario",
        "Given the crowd numbers this week, should we cancel the Malakpet rally and "
        "redeploy to door-to-door? Weigh it up.",
    ),
    (1, "moderate", "messaging", "Draft a tweet reacting to the result trends that are coming in."),
    (1, "moderate", "summary", "Summarise what the rival said in his speech this evening."),
    (1, "moderate", "sentiment_tagging", "How did people react online to the manifesto video?"),
    (1, "simple", "fact_lookup", "Is the Ameerpet metro station exit closed for the VIP visit?"),
    (
        0,
        "simple",
        "translation",
        'Translate into Urdu: "The candidate will meet residents at 6 pm in the community hall."',
    ),
    (0, "simple", "translation", 'Telugu mein likh do: "paani ki samasya jaldi hal hogi"'),
    (0, "simple", "summary", "Summarise the RWA's letter below in two sentences."),
    (0, "simple", "extraction", "Pull out every date mentioned in the circular below."),
    (0, "simple", "extraction", "extract names + wards from the volunteer form text"),
    (
        0,
        "simple",
        "sentiment_tagging",
        "Tag each of these reviews of our candidate's speech as positive or negative.",
    ),
    (0, "simple", "messaging", 'Rewrite this notice so it sounds polite: "No entry without pass."'),
    (
        0,
        "moderate",
        "messaging",
        "Write a short thank-you speech for the candidate at the volunteers' dinner.",
    ),
    (
        0,
        "complex",
        "messaging",
        "Develop the campaign's positioning against an incumbent who is personally liked.",
    ),
    (
        0,
        "complex",
        "scenario",
        "Plan a two-month campaign to register first-time voters in Malakpet colleges.",
    ),
    (
        0,
        "complex",
        "scenario",
        "What would happen to our chances if turnout among women rises sharply? Work through the scenarios.",
    ),
    (
        0,
        "complex",
        "crisis",
        "Lay out how we should handle a situation where our candidate is accused of hate speech.",
    ),
    (0, "moderate", "opposition_research", "What should we check in a rival's campaign expense filings?"),
    (0, "simple", "fact_lookup", "What is a returning officer?"),
    (
        0,
        "moderate",
        "briefing",
        "Make a candidate brief from these notes: broken footpaths, no playground, frequent power cuts.",
    ),
]


def test_generalises_to_unseen_queries(classifier: QueryClassifier) -> None:
    if not UNSEEN:
        pytest.skip("no unseen queries listed")
    hits = Counter[str]()
    for fresh, complexity, task, text in UNSEEN:
        needs = classifier.predict(text)
        hits["fresh"] += (needs.fresh_p > 0.5) == bool(fresh)
        hits["complexity"] += needs.complexity == complexity
        hits["task"] += needs.task == task
    n = len(UNSEEN)
    # Shipped model: 97, 90 and 89 of 103 (the one before it: 95, 86 and 89). The floors leave room for retraining
    # on a grown dataset.
    assert hits["fresh"] / n >= 0.90, hits
    assert hits["complexity"] / n >= 0.80, hits
    assert hits["task"] / n >= 0.78, hits


@pytest.mark.parametrize(
    "text",
    ["", " ", "\n\t  \n", "?", "🙂🙂", "ok", "x" * 5000, "రాలీ ఇంకా ఉందా?", "Is the rally on?" * 200],
)
def test_probabilities_are_distributions(classifier: QueryClassifier, text: str) -> None:
    needs = classifier.predict(text)
    assert 0.0 <= needs.fresh_p <= 1.0
    assert tuple(needs.complexity_p) == COMPLEXITY_LABELS
    assert tuple(needs.task_p) == TASK_LABELS
    for dist in (needs.complexity_p, needs.task_p):
        assert math.isclose(sum(dist.values()), 1.0, abs_tol=1e-9)
        assert all(0.0 <= p <= 1.0 for p in dist.values())
    assert needs.complexity in COMPLEXITY_LABELS
    assert needs.task in TASK_LABELS


def test_empty_input_gets_training_priors(classifier: QueryClassifier) -> None:
    # A featureless text carries no evidence, so the answer is the base rate rather than an extrapolation.
    rows = [r for r in _dataset() if r["split"] == "train"]
    for text in ("", "   \n "):
        needs = classifier.predict(text)
        assert needs.fresh_p == pytest.approx(sum(r["fresh"] for r in rows) / len(rows))
        assert needs.task_p["fact_lookup"] == pytest.approx(sum(r["task"] == "fact_lookup" for r in rows) / len(rows))
        for complexity in COMPLEXITY_LABELS:
            share = sum(r["complexity"] == complexity for r in rows) / len(rows)
            assert needs.complexity_p[complexity] == pytest.approx(share)
    assert classifier.predict("") == classifier.predict("   ")


def test_argmax_properties() -> None:
    needs = QueryNeeds(
        fresh_p=0.3,
        complexity_p={"simple": 0.2, "moderate": 0.5, "complex": 0.3},
        task_p={t: (0.55 if t == "crisis" else 0.05) for t in TASK_LABELS},
    )
    assert needs.complexity == "moderate"
    assert needs.task == "crisis"


def test_default_classifier_is_cached() -> None:
    assert default_classifier() is default_classifier()


def test_scores_do_not_depend_on_words_seen_before() -> None:
    # The char n-gram block keeps each word's columns (an LRU): a text must score the same whether its words are
    # new to the classifier or were seen in earlier texts, and a word too long to be kept must score as usual.
    long_word = "mobilisation" * 5
    texts = [f"Booth plan for Jubilee Hills {long_word}", "jubilee hills booth PLAN?", f"{long_word} plan plan plan"]
    warmed = QueryClassifier.load()
    for text in texts:
        warmed.predict_proba(text)
    for text in texts:
        assert warmed.predict_proba(text) == QueryClassifier.load().predict_proba(text)


def test_artifact_metadata_matches_dataset(classifier: QueryClassifier) -> None:
    import hashlib

    assert classifier.metadata["dataset_sha256"] == hashlib.sha256(DATASET.read_bytes()).hexdigest()
    assert DEFAULT_MODEL_PATH.stat().st_size < 5_000_000


def test_load_rejects_missing_or_foreign_artifacts(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError):
        QueryClassifier.load(tmp_path / "nope.json")
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ArtifactError):
        QueryClassifier.load(foreign)
    broken = tmp_path / "broken.json"
    doc = json.loads(DEFAULT_MODEL_PATH.read_text())
    doc["heads"]["task"]["coef"] = doc["heads"]["task"]["coef"][:3]
    broken.write_text(json.dumps(doc))
    with pytest.raises(ArtifactError):
        QueryClassifier.load(broken)


def test_dataset_is_well_formed() -> None:
    rows = _dataset()
    assert len(rows) >= 700
    assert len({r["id"] for r in rows}) == len(rows)
    assert len({" ".join(r["text"].lower().split()) for r in rows}) == len(rows)
    assert {r["task"] for r in rows} == set(TASK_LABELS)
    assert {r["complexity"] for r in rows} == set(COMPLEXITY_LABELS)
    assert {r["fresh"] for r in rows} == {0, 1}
    assert {r["split"] for r in rows} == {"train", "test"}
    test_share = sum(r["split"] == "test" for r in rows) / len(rows)
    assert 0.17 <= test_share <= 0.23
    for task in TASK_LABELS:
        assert any(r["split"] == "test" and r["task"] == task for r in rows), task
    # Fresh and complex are independent axes: the data must show queries that are both.
    assert any(r["fresh"] == 1 and r["complexity"] == "complex" for r in rows)
    required_texts = {" ".join(t.lower().split()) for t, _ in REQUIRED}
    assert not required_texts & {" ".join(r["text"].lower().split()) for r in rows}


# --- parity with sklearn and reproducibility (need scikit-learn, a dev dependency) -------------------------


def _load_train_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("train_classifier", TRAIN_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the module body runs.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def retrained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ModuleType, Any, Path]]:
    """Retrain from the dataset once (~10 s): the fitted sklearn model and its freshly written artifact."""
    pytest.importorskip("sklearn")
    train_classifier = _load_train_script()
    queries, sha = train_classifier.load_dataset(DATASET)
    train = [q for q in queries if q.split == "train"]
    test = [q for q in queries if q.split == "test"]
    model = train_classifier.fit_model(train)
    out = tmp_path_factory.mktemp("artifact") / "classifier_model.json"
    doc = train_classifier.export_artifact(model, sha, {"train": len(train), "test": len(test)}, train)
    train_classifier.write_artifact(doc, out)
    yield train_classifier, model, out


# What reproducible means across CPUs: the same structure, the same vocabulary, labels and hyper-parameters
# exactly, and every weight within 1e-6 of the shipped one. Training itself is deterministic, but BLAS kernels
# differ between CPU generations (AVX2 against AVX-512) in the last bits, which the shipped 10 significant
# digits can carry across a rounding boundary (measured: at most 4e-8 apart). A stale artifact differs by far
# more than this, or in its vocabulary or dataset hash.
WEIGHT_TOLERANCE = 1e-6


def _differences(a: Any, b: Any, where: str = "$") -> Iterator[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            yield f"{where}: keys differ ({sorted(a.keys() ^ b.keys())[:5]})"
            return
        for key in a:
            yield from _differences(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            yield f"{where}: {len(a)} items against {len(b)}"
            return
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            yield from _differences(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        if not (isinstance(a, int | float) and isinstance(b, int | float)) or not math.isclose(
            a, b, rel_tol=WEIGHT_TOLERANCE, abs_tol=WEIGHT_TOLERANCE
        ):
            yield f"{where}: {a!r} against {b!r}"
    elif a != b:
        yield f"{where}: {a!r} against {b!r}"


def test_retraining_reproduces_the_shipped_artifact(retrained: tuple[ModuleType, Any, Path]) -> None:
    _, _, out = retrained
    fresh = json.loads(out.read_text(encoding="utf-8"))
    shipped = json.loads(DEFAULT_MODEL_PATH.read_text(encoding="utf-8"))
    differences = list(_differences(fresh, shipped))
    assert not differences, (
        f"nodes/policy/classifier_model.json is stale ({len(differences)} differences, first: {differences[:3]}): "
        "run `PYTHONPATH=. python data/train_classifier.py` and commit the result"
    )


def test_the_reproducibility_check_catches_a_changed_weight(retrained: tuple[ModuleType, Any, Path]) -> None:
    _, _, out = retrained
    doc = json.loads(out.read_text(encoding="utf-8"))
    changed = json.loads(out.read_text(encoding="utf-8"))
    head = next(iter(changed["heads"].values()))
    head["intercept"][0] += 1e-4
    assert list(_differences(doc, doc)) == []
    assert len(list(_differences(changed, doc))) == 1


def test_runtime_matches_sklearn_predict_proba(retrained: tuple[ModuleType, Any, Path]) -> None:
    train_classifier, model, out = retrained
    runtime = QueryClassifier.load(out)
    test_texts = [r["text"] for r in _dataset() if r["split"] == "test"]
    # Featureless texts ("", whitespace) are left out on purpose: the runtime answers them with priors.
    odd = ["bhai kal ka rally cancel hua kya", "x" * 3000, "జూబ్లీ హిల్స్ ఫలితం?", "?", "🙂"]
    texts = [*test_texts[::3], *odd]
    expected = train_classifier.predict_proba(model, texts)
    for i, text in enumerate(texts):
        got = runtime.predict_proba(text)
        for head, proba in expected.items():
            classes = [c.item() if hasattr(c, "item") else c for c in model.heads[head].classes_]
            for j, label in enumerate(classes):
                assert got[head][label] == pytest.approx(proba[i, j], abs=1e-6), (head, label, text)
