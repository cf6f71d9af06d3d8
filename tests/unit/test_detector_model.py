"""The detector's model: how it is combined with the rules (the rules stay the floor), its
integer scoring, the shipped weights (reproducible from the corpus, refused when damaged),
and the cross-validation that measures it.

The browser's copy of the same arithmetic is held to this one by
tests/browser/test_detector_browser.py.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.web.resource import Resource

from hearth.moderation.crisis_config import (
    MODEL_SUFFIX,
    SHIPPED_CRISIS,
    CrisisReference,
    load_crisis,
    load_rule_pack,
    model_to_json,
    pack_to_json,
    parse_model,
)
from hearth.moderation.detector import (
    MODEL_HEADS,
    MODEL_HIGH_ID,
    MODEL_RISK_ID,
    SEVERITIES,
    Detection,
    Model,
    ModelScores,
    Parts,
    RulePack,
    combine,
    detect,
    detect_parts,
    fnv1a,
    message_features,
    model_category,
    model_scores,
    reaches,
)
from hearth.moderation.detector_eval import TRAINING_FILES, load_corpus, main, training_corpus
from hearth.moderation.detector_train import main as train_main
from hearth.spaces.config import ConfigError, HearthConfig
from hearth.web.reload import Reloader
from tests.support.config import make_config
from tests.support.detector_cases import load_cases

HEADS = len(MODEL_HEADS)


def tiny_model(bias: tuple[int, ...] = (0, 0, 0, 0, 0), fire: int = 3, high: int = 2,
               damping: int = 0) -> Model:
    return Model(language="en", pack="hearth-en", pack_version="3.4.0", buckets=256,
                 char_ngrams=(3, 5), damping=damping, bias=bias,
                 levels={"fire": fire, "high": high}, weights=bytes(256 * HEADS))


def rule_detection(category: str = "intent", severity: str = "medium") -> Detection:
    return Detection(category=category, severity=severity, rule_ids=("en.intent.x",),
                     pack="hearth-en", version="3.4.0")


def scores(risk: int, high: int = 0, intent: int = 0, means: int = 0, farewell: int = 0,
           count: int = 100) -> ModelScores:
    return ModelScores(sums=(risk, high, intent, means, farewell), count=count)


# ---- the arithmetic ---------------------------------------------------------

def test_a_head_reaches_a_level_exactly_as_bias_plus_sum_over_root_count() -> None:
    model = tiny_model(bias=(1, -2, 0, 0, 0), fire=4, high=-5)
    assert reaches(model, scores(30), "risk", "fire")  # 1 + 30 / 10 = 4
    assert not reaches(model, scores(29), "risk", "fire")
    assert reaches(model, scores(0, -30), "high", "high")  # -2 - 3 = -5
    assert not reaches(model, scores(0, -31), "high", "high")
    assert reaches(model, scores(0, count=7), "high", "high")  # -2 >= -5, whatever the count


def test_the_category_is_the_highest_category_head_and_a_tie_goes_to_the_earlier() -> None:
    model = tiny_model()
    assert model_category(model, scores(0, intent=5, means=5, farewell=5)) == "intent"
    assert model_category(model, scores(0, intent=5, means=6, farewell=6)) == "means_method"
    assert model_category(model, scores(0, farewell=1)) == "farewell"
    biased = tiny_model(bias=(0, 0, 0, 2, 0))
    assert model_category(biased, scores(0, intent=19, count=100)) == "means_method"  # 1.9 < 2
    assert model_category(biased, scores(0, intent=21, count=100)) == "intent"


def test_features_are_fnv1a_hashes_of_words_pairs_ngrams_and_exception_sets(
        crisis: CrisisReference) -> None:
    assert fnv1a("") == 0x811C9DC5 and fnv1a("a") == 0xE40C292C  # the published FNV-1a values
    pack = crisis.packs["en"]
    buckets = message_features(pack, "pills tonight", 1 << 16, (3, 5))
    assert buckets == sorted(set(buckets))
    assert fnv1a("pills", fnv1a("w ")) & 0xFFFF in buckets
    assert fnv1a("pills tonight", fnv1a("b ")) & 0xFFFF in buckets
    assert fnv1a("<pi", fnv1a("c ")) & 0xFFFF in buckets
    # An exception set that matched is a feature of its own.
    past = message_features(pack, "I used to want to die", 1 << 16, (3, 5))
    assert any(fnv1a(name, fnv1a("x ")) & 0xFFFF in past for name in pack.exceptions)


# ---- how the model and the rules combine --------------------------------------------

@pytest.mark.parametrize("severity", SEVERITIES)
def test_the_model_never_drops_or_quietens_a_rule_detection(severity: str) -> None:
    pack_stub = _pack_stub()
    found = rule_detection(severity=severity)
    doubtful = scores(-1000, high=-1000, count=1)  # the model is sure there is no risk
    got = combine(pack_stub, tiny_model(), Parts(rules=found, scores=doubtful))
    assert got == found


def test_the_model_detects_alone_only_where_no_rule_matched() -> None:
    pack_stub = _pack_stub()
    sure = scores(40, means=9)  # 0 + 40 / 10 = 4 >= fire 3
    got = combine(pack_stub, tiny_model(high=100), Parts(scores=sure))
    assert got == Detection(category="means_method", severity="medium", rule_ids=(MODEL_RISK_ID,),
                            pack=pack_stub.id, version=pack_stub.version)
    # A rule that matched and was negated or excepted keeps it quiet ("I don't want to die").
    assert combine(pack_stub, tiny_model(), Parts(scores=sure, ruled_out=True)) is None
    assert combine(pack_stub, tiny_model(), Parts(scores=scores(29))) is None  # below fire
    assert combine(pack_stub, None, Parts(scores=sure)) is None  # no model, the rules alone


def test_a_set_that_quiets_the_model_stops_only_its_own_detections() -> None:
    pack_stub = _pack_stub()
    sure = scores(40, 20, means=9)
    assert combine(pack_stub, tiny_model(), Parts(scores=sure)) is not None
    assert combine(pack_stub, tiny_model(), Parts(scores=sure, quiet=True)) is None
    lifted = combine(pack_stub, tiny_model(), Parts(rules=rule_detection(), scores=sure, quiet=True))
    assert lifted is not None and lifted.severity == "high"


@pytest.mark.parametrize("language,text,severity", [
    ("en", "bye everyone, take care", None),
    ("en", "I'm going to bed, goodnight all", None),
    ("en", "Please hide this one", None),
    ("es", "chao, cuídense", None),
    ("es", "gracias por escuchar", None),
    # Plans for the day and the evening (everyday_plans, planes_cotidianos).
    ("en", "Off to pick up the kids, back in an hour", None),
    ("en", "I'm going to make soup tonight", None),
    ("es", "Esta noche voy a hacer sopa para todos", None),
    ("es", "Ya volví, se despertó la bebé", None),
    # The sets only quiet the model: a farewell the rules know still fires.
    ("en", "Goodbye everyone, take care of each other", "high"),
    ("es", "Adiós a todos, cuídense mucho", "high"),
    ("en", "I'm going to cook dinner for the kids, then I'm going to kill myself", "medium"),
    ("es", "Voy a hacer la cena para los niños y después me voy a matar", "medium"),
])
def test_closings_quiet_the_shipped_models_and_never_a_rule(
        crisis: CrisisReference, language: str, text: str, severity: str | None) -> None:
    pack = crisis.packs[language]
    assert detect_parts(pack, text).quiet
    detection = detect(pack, text)
    assert (detection and detection.severity) == severity


@pytest.mark.parametrize("language,lone,together", [
    # A cue of quantity needs a means; a word of finality needs a near time.
    ("en", "is that enough for everyone?", "is that enough pills for everyone?"),
    ("en", "nothing keeping me here", "after Friday there's nothing keeping me here"),
    ("es", "con eso alcanza", "con eso alcanza, tengo tres cajas de pastillas"),
    ("es", "nada que me retenga", "después del cumple ya no hay nada que me retenga"),
])
def test_a_sign_without_the_company_it_needs_rules_nothing_out(
        crisis: CrisisReference, language: str, lone: str, together: str) -> None:
    """The model may still speak where a sign that only counts next to another stands alone
    (it is not a negation or an exception: the rules found too little, not a reason for quiet);
    a negated sign keeps it quiet."""
    pack = dataclasses.replace(crisis.packs[language], model=None)
    alone = detect_parts(pack, lone)
    assert alone.rules is None and not alone.ruled_out
    found = detect_parts(pack, together).rules
    assert found is not None and found.severity == "high"
    assert any(rule_id.endswith(("means_cue_weak", "finality_weak")) for rule_id in found.rule_ids)
    assert detect_parts(pack, "I don't want to die" if language == "en" else "no quiero morir").ruled_out


def test_the_model_lifts_its_categories_to_high_and_leaves_others_alone() -> None:
    pack_stub = _pack_stub()
    lifted = combine(pack_stub, tiny_model(), Parts(rules=rule_detection(), scores=scores(0, 20)))
    assert lifted is not None and (lifted.severity, lifted.rule_ids) == (
        "high", ("en.intent.x", MODEL_HIGH_ID))
    other = rule_detection("harm_from_others", "low")
    assert combine(pack_stub, tiny_model(), Parts(rules=other, scores=scores(0, 20))) == other
    assert combine(pack_stub, tiny_model(), Parts(rules=rule_detection(),
                                                   scores=scores(0, 19))) == rule_detection()
    alone = combine(pack_stub, tiny_model(), Parts(scores=scores(40, 40, farewell=1)))
    assert alone is not None and (alone.category, alone.severity, alone.rule_ids) == (
        "farewell", "high", (MODEL_RISK_ID, MODEL_HIGH_ID))


@functools.cache
def _pack_stub() -> RulePack:
    """The shipped English rules without a model: combine() takes the model on its own."""
    return load_rule_pack(SHIPPED_CRISIS / "rules" / "en.toml", "en", with_model=False)


def _rank(detection: Detection | None) -> int:
    return -1 if detection is None else SEVERITIES.index(detection.severity)


_BARE: dict[int, tuple[RulePack, RulePack]] = {}


def _without_model(pack: RulePack) -> RulePack:
    """The pack with its model taken out, built once per pack (a pack's index is not cheap)."""
    if id(pack) not in _BARE:
        _BARE[id(pack)] = (pack, dataclasses.replace(pack, model=None))
    return _BARE[id(pack)][1]


def _assert_floor(pack: RulePack, text: str) -> None:
    parts = detect_parts(pack, text)
    with_model = detect(pack, text)
    assert with_model == combine(pack, pack.model, parts)
    if parts.rules is not None:
        assert with_model is not None and with_model.category == parts.rules.category
        assert _rank(with_model) >= _rank(parts.rules)
        assert with_model.rule_ids[:len(parts.rules.rule_ids)] == parts.rules.rule_ids
    assert parts.rules == detect(_without_model(pack), text)


def test_with_the_shipped_models_the_rules_stay_the_floor(crisis: CrisisReference) -> None:
    lines = load_corpus(training_corpus())
    for line in lines:
        _assert_floor(crisis.packs[line.language], line.text)
    for case in load_cases():
        _assert_floor(crisis.packs[case["language"]], case["text"])
    # ...and the model does add: lines the rules alone miss that it finds.
    added = [line for line in lines
             if (d := detect(crisis.packs[line.language], line.text)) is not None
             and d.rule_ids == (MODEL_RISK_ID, *d.rule_ids[1:])]
    assert len(added) > 100


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(["pills", "tonight", "no", "quiero", "morir", "bridge", "goodbye",
                                 "lol", "used", "to", "my", "friend", "want", "die", "💊", ",",
                                 "."]), max_size=60).map(" ".join))
def test_the_floor_holds_on_generated_text(crisis: CrisisReference, text: str) -> None:
    for pack in crisis.packs.values():
        _assert_floor(pack, text)


# ---- the shipped weights --------------------------------------------------------

def test_the_shipped_models_are_what_training_on_the_training_files_gives(
        capsys: pytest.CaptureFixture[str]) -> None:
    """Training is deterministic: the same corpus and packs give the same bytes."""
    assert train_main(["--check"]) == 0, capsys.readouterr().err


def test_the_shipped_models_belong_to_their_packs_and_saw_no_held_out_part(
        crisis: CrisisReference) -> None:
    for language, pack in crisis.packs.items():
        model = pack.model
        assert model is not None, language
        assert (model.language, model.pack, model.pack_version) == (language, pack.id, pack.version)
        assert model.trained_on == TRAINING_FILES
    # The page's budget: detector.js and one pack, its model inside, within 300 KB (the pack as
    # /crisis/rules/<lang>.json serves it: compact JSON), with 25 KB to spare for what the
    # next rules and the next language need.
    script = (SHIPPED_CRISIS.parents[1] / "web" / "static" / "js" / "detector.js").stat().st_size
    for pack in crisis.packs.values():
        served = json.dumps(pack_to_json(pack), separators=(",", ":")).encode()
        assert script + len(served) < 300_000 - 25_000


def _found_by_the_model_alone(crisis: CrisisReference) -> tuple[RulePack, str]:
    for line in load_corpus(training_corpus()):
        pack = crisis.packs[line.language]
        parts = detect_parts(pack, line.text)
        detection = detect(pack, line.text)
        if parts.rules is None and detection is not None and detection.severity == "medium":
            return pack, line.text
    raise AssertionError("the model finds nothing the rules miss")


def test_a_weight_flipped_changes_a_known_result(crisis: CrisisReference) -> None:
    pack, text = _found_by_the_model_alone(crisis)
    model = pack.model
    assert model is not None
    weights = bytearray(model.weights)
    risk = MODEL_HEADS.index("risk")
    buckets = message_features(pack, text, model.buckets, model.char_ngrams)
    heaviest = max(buckets, key=lambda b: weights[b * HEADS + risk] ^ 0x80)  # largest signed
    before = model_scores(model, buckets).sums[risk]
    signed = weights[heaviest * HEADS + risk] - (256 if weights[heaviest * HEADS + risk] > 127 else 0)
    weights[heaviest * HEADS + risk] = (-signed) & 0xFF
    broken = dataclasses.replace(pack, model=dataclasses.replace(model, weights=bytes(weights)))
    assert model_scores(broken.model, buckets).sums[risk] == before - 2 * signed  # type: ignore[arg-type]
    # Flipping every weight of the message's risk head surely silences it.
    for b in buckets:
        value = weights[b * HEADS + risk]
        weights[b * HEADS + risk] = (-(value - 256 if value > 127 else value)) & 0xFF
    silenced = dataclasses.replace(pack, model=dataclasses.replace(model, weights=bytes(weights)))
    assert detect(pack, text) is not None and detect(silenced, text) is None


# ---- a model file is untrusted like a pack ---------------------------------------

def _copy(tmp_path: Path) -> Path:
    target = tmp_path / "crisis"
    shutil.copytree(SHIPPED_CRISIS, target)
    return target


def _edit_model(path: Path, change: Any) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data), encoding="utf-8")


def _flip_a_byte(data: dict[str, Any]) -> None:
    raw = bytearray(base64.b64decode(data["weights"]))
    raw[100] ^= 0x01
    data["weights"] = base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize("change,fragment", [
    (_flip_a_byte, "crc32: expected the CRC-32 of the weights"),
    (lambda d: d.update(format=2), "format: expected 1, the model format this Hearth reads"),
    (lambda d: d.update(pack_version="2.0.0"), "pack_version: expected '3.5.0', the version of its pack"),
    (lambda d: d.update(pack="hearth-es"), "pack: expected 'hearth-en'"),
    (lambda d: d.update(buckets=1000), "buckets: expected a power of two"),
    (lambda d: d.update(weights=d["weights"][:-8]), "weights: expected"),
    (lambda d: d.update(weights="not base64!"), "weights: expected base64 text"),
    (lambda d: d["levels"].pop("high"), "levels.high: expected a whole number"),
    (lambda d: d.update(bias=[0, 0, 0, 0, 1 << 20]), "bias[4]: expected a whole number from"),
    (lambda d: d.update(heads=["risk"]), "heads: expected"),
    (lambda d: d.update(extra=1), "extra: unknown key"),
])
def test_a_bad_model_file_names_the_file_and_the_key(tmp_path: Path, change: Any,
                                                     fragment: str) -> None:
    directory = _copy(tmp_path)
    path = directory / "rules" / ("en" + MODEL_SUFFIX)
    _edit_model(path, change)
    with pytest.raises(ConfigError) as caught:
        load_crisis(directory)
    matching = [p for p in caught.value.problems if fragment in p]
    assert matching, "\n".join(caught.value.problems)
    assert all(p.startswith(f"{path}:") for p in matching)


def test_a_model_file_that_is_not_a_model_is_refused_before_parsing(tmp_path: Path) -> None:
    directory = _copy(tmp_path)
    rules = directory / "rules"
    (rules / "en.model.json").write_text("{not json", encoding="utf-8")
    (rules / "es.model.json").write_bytes(b" " * 700_000)
    shutil.copy(SHIPPED_CRISIS / "rules" / "en.model.json", rules / "fr.model.json")
    with pytest.raises(ConfigError) as caught:
        load_crisis(directory)
    problems = "\n".join(caught.value.problems)
    assert f"{rules / 'en.model.json'}: not valid JSON" in problems
    assert f"{rules / 'es.model.json'}: expected a model of at most" in problems
    assert f"{rules / 'fr.model.json'}: expected the rule pack fr.toml beside it" in problems


def test_without_a_model_file_a_pack_runs_its_rules_alone(tmp_path: Path) -> None:
    directory = _copy(tmp_path)
    (directory / "rules" / "es.model.json").unlink()
    crisis = load_crisis(directory)
    assert crisis.packs["es"].model is None and crisis.packs["en"].model is not None
    assert pack_to_json(crisis.packs["es"])["model"] is None
    alone = load_rule_pack(directory / "rules" / "en.toml", "en", with_model=False)
    assert alone.model is None


def _served_models(config: HearthConfig, directory: Path | None = None) -> dict[str, Any]:
    """What a (re)loaded server serves at /crisis/rules/<lang>.json as `model`, by language
    (web/reload.py, given what web/service.py gives it)."""
    root = Resource()
    reloader = Reloader(Clock(), root, directory or Path(config.crisis.directory),
                        config.crisis.detector_model)
    assert reloader.reload() == []
    served = root.getStaticEntity(b"crisis")
    return {path[1].removesuffix(".json"): json.loads(body)["model"]
            for path, body in served.files.items() if path[0] == "rules"}


def test_the_default_config_serves_the_packs_without_their_models() -> None:
    """The model still fires on some everyday talk ("mi esposo tiene una escopeta para cazar en
    la finca"): an operator turns it on knowingly ([crisis] detector_model, docs/crisis.md)."""
    off = make_config()
    assert not off.crisis.detector_model
    assert _served_models(off) == {"en": None, "es": None}
    on = make_config(crisis={"detector_model": True})
    served = _served_models(on)
    assert sorted(served) == ["en", "es"]
    for language, model in served.items():
        assert model is not None and model["language"] == language
    crisis = load_crisis(with_models=False)  # what service.py loads for the default config
    assert all(pack.model is None for pack in crisis.packs.values())
    hunting = "mi esposo tiene una escopeta para cazar en la finca"
    assert detect(crisis.packs["es"], hunting) is None
    assert detect(load_crisis().packs["es"], hunting) is not None  # why it is off


def test_a_broken_model_file_is_refused_even_while_the_model_is_off(tmp_path: Path) -> None:
    directory = _copy(tmp_path)
    path = directory / "rules" / ("en" + MODEL_SUFFIX)
    _edit_model(path, _flip_a_byte)
    with pytest.raises(ConfigError) as caught:
        load_crisis(directory, with_models=False)
    assert any(p.startswith(f"{path}: crc32: expected") for p in caught.value.problems), \
        caught.value.problems
    root = Resource()
    problems = Reloader(Clock(), root, directory, False).reload()
    assert problems and all(p.startswith("crisis data: ") for p in problems)
    assert b"crisis" not in root.children  # refused: the running data stays


def test_a_model_survives_its_json_round_trip(crisis: CrisisReference) -> None:
    pack = crisis.packs["en"]
    assert pack.model is not None
    again = parse_model(model_to_json(pack.model), "en.model.json", pack)
    assert again == pack.model


# ---- leave-one-writer-out cross-validation ---------------------------------------------

def test_cross_validation_holds_out_each_writer_and_never_goes_below_the_rules(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--cv", "--json", "--language", "es"]) == 0
    data = json.loads(capsys.readouterr().out)
    rows = data["cv"]["rows"]
    # Every writer held out in turn; everyday talk written for training (no risk line) never is.
    writers = [w for w in TRAINING_FILES if w != "train-quiet.jsonl"]
    assert len(writers) == len(TRAINING_FILES) - 1
    assert set(rows) == {f"{w}/{lang}" for w in [*writers, "all"] for lang in ("es", "all")}
    assert data["packs"]["es"]["model"] == "held out"
    for name, row in rows.items():
        assert row["targets"]["recall"] >= row["rules_alone"]["recall"], name
        assert row["targets"]["core_high"] >= row["rules_alone"]["core_high"], name
    # The rules alone are the plain evaluation's figures on the same lines.
    assert main(["--no-model", "--json", "--language", "es", "--corpus",
                 str(training_corpus()[2])]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert rows[f"{TRAINING_FILES[2]}/es"]["rules_alone"] == {
        t["key"]: t["value"] for t in plain["targets"]}
    assert [row["fire"] for row in data["cv"]["sweep"]][:2] == [1.5, 2.0]
