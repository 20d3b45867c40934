"""Real prompt sets: the I2P CSV, CoPro-style pairs, rewrites proposed by the model's own text path.

The I2P tests read tests/data/i2p_sample.csv, 134 real rows of I2P in its own format (see
tests/data/README.md), so they always run. Its counts are computed here a second way (csv.reader,
plain string split; pandas for the row count) and compared with the loader. One test checks facts
only the full shared file has (4703 rows, its category counts, pinned as literals checked by hand
once) and is skipped where that file is absent. Text generation runs on the tiny random
Janus-Pro-layout checkpoint (chat path) and on the shipped toy (no chat template). No mocks.
"""

import csv
import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from safecb.engine.prompts import RoundPrompts
from safecb.models.backend import MAX_PROMPT_CHARS
from safecb.models.text import generate_text, text_generation_ids
from safecb.models.tiny import ASSISTANT, USER
from safecb.prompts.copro import CoProConfig, load_copro, read_copro
from safecb.prompts.i2p import I2P_CATEGORIES, I2PConfig, count_categories, filter_i2p, load_i2p, read_i2p
from safecb.prompts.rewrite import (
    REWRITE_SOURCES,
    RewriteConfig,
    clean_model_answer,
    clip_prompt,
    lexicon_rewrite,
    neutral_rewrite,
    overlong_prompts,
    propose_rewrites,
    why_unusable,
)
from safecb.prompts.rounds import BENIGN_PROMPTS, build_i2p_round, copro_round_prompts

I2P_SAMPLE = Path(__file__).parent / "data" / "i2p_sample.csv"  # real I2P rows, see tests/data/README.md
I2P_CSV = Path("/work/shared/data/i2p/unsafe-prompts4703.csv")  # the full benchmark, outside the repository
needs_full_i2p = pytest.mark.skipif(
    not I2P_CSV.is_file(),
    reason=f"checks facts of the full shared I2P file (4703 rows, its category counts); {I2P_CSV} is not here",
)

# Checked by hand once against the full file (one row, index 2260, has a blank prompt and is skipped;
# the sample keeps that row).
I2P_ROWS, I2P_BLANK_ROWS = 4703, [2260]
I2P_CATEGORY_COUNTS = {
    "sexual": 931, "shocking": 856, "harassment": 824, "self-harm": 801,
    "violence": 756, "illegal activity": 726, "hate": 231,
}
I2P_HARD = 1830


def independent_i2p_rows(path: Path = I2P_SAMPLE) -> tuple[list[str], list[list[str]]]:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]


def independent_counts(path: Path = I2P_SAMPLE):
    header, rows = independent_i2p_rows(path)
    prompt, categories, hard = header.index("prompt"), header.index("categories"), header.index("hard")
    kept = [r for r in rows if r[prompt].strip()]
    counts: dict[str, int] = {}
    for r in kept:
        for name in r[categories].split(","):
            counts[name.strip()] = counts.get(name.strip(), 0) + 1
    return len(rows), kept, counts, sum(r[hard] == "1" for r in kept), (prompt, categories, hard)


def independent_filter_count(path: Path, wanted, hard_only=False) -> int:
    _, kept, _, _, (_, cat_col, hard_col) = independent_counts(path)
    return sum(1 for r in kept if {c.strip() for c in r[cat_col].split(",")} & set(wanted)
               and (r[hard_col] == "1" or not hard_only))


def write_csv(path: Path, rows: list[dict], header=("", "prompt", "categories", "hard", "evaluation_seed",
                                                     "evaluation_guidance", "nudity_percentage")) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(header))
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
    return path


# ---------------------------------------------------------------- real I2P rows
def test_i2p_reads_every_row_of_the_sample():
    loaded = read_i2p(I2P_SAMPLE)
    _, rows = independent_i2p_rows()
    n_rows, kept, _, _, (prompt, _, _) = independent_counts()
    assert loaded.rows_read == n_rows == len(pd.read_csv(I2P_SAMPLE)) == len(rows)
    assert loaded.blank_rows == [int(r[0]) for r in rows if not r[prompt].strip()] == I2P_BLANK_ROWS
    assert len(loaded.records) == len(kept) == n_rows - len(I2P_BLANK_ROWS)
    assert [r.prompt for r in loaded.records] == [r[prompt] for r in kept]  # text kept exactly
    assert [r.index for r in loaded.records] == [int(r[0]) for r in kept]  # the file's own row index
    # the file has more lines than rows because some quoted prompts span several lines
    embedded_newlines = sum(r.prompt.count("\n") for r in loaded.records)
    assert embedded_newlines > 0
    with I2P_SAMPLE.open(encoding="utf-8", newline="") as handle:
        n_lines = sum(1 for _ in handle)
    assert n_lines == 1 + n_rows + embedded_newlines


def test_i2p_category_and_hard_counts_match_an_independent_count():
    records = read_i2p(I2P_SAMPLE).records
    _, _, counts, hard, _ = independent_counts()
    assert count_categories(records) == counts
    assert set(counts) == set(I2P_CATEGORIES)  # every category appears in the sample
    assert sum(r.hard for r in records) == hard and 0 < hard < len(records)  # hard and not hard both appear


@needs_full_i2p
def test_the_full_i2p_file_has_its_4703_rows_and_category_counts():
    loaded = read_i2p(I2P_CSV)
    records = loaded.records
    n_rows, kept, counts, hard, (prompt, _, _) = independent_counts(I2P_CSV)
    assert loaded.rows_read == n_rows == len(pd.read_csv(I2P_CSV)) == I2P_ROWS
    assert loaded.blank_rows == I2P_BLANK_ROWS
    assert len(records) == len(kept) == I2P_ROWS - len(I2P_BLANK_ROWS)
    assert [r.prompt for r in records] == [r[prompt] for r in kept]
    assert [r.index for r in records] == [i for i in range(I2P_ROWS) if i not in I2P_BLANK_ROWS]
    embedded_newlines = sum(r.prompt.count("\n") for r in records)
    with I2P_CSV.open(encoding="utf-8", newline="") as handle:
        assert sum(1 for _ in handle) == 1 + I2P_ROWS + embedded_newlines
    assert count_categories(records) == counts == I2P_CATEGORY_COUNTS
    assert sum(r.hard for r in records) == hard == I2P_HARD
    assert len(filter_i2p(records, ("violence",))) == independent_filter_count(I2P_CSV, ["violence"]) == 756
    assert len(filter_i2p(records, ("sexual", "violence"))) == 1672
    assert len(filter_i2p(records, "violence", hard_only=True)) == 313
    # every sample row is a row of the full file, unchanged
    full = {r.index: r for r in records}
    assert all(full[r.index] == r for r in read_i2p(I2P_SAMPLE).records)


def test_i2p_record_fields():
    records = {r.index: r for r in read_i2p(I2P_SAMPLE).records}
    first = records[0]
    assert first.categories == ("violence", "self-harm") and first.hard is True
    assert (first.seed, first.guidance, first.width, first.height, first.case_number) == (4261553411, 13.0, 512, 512, 0)
    assert (first.inappropriate_percentage, first.nudity_percentage, first.q16_percentage) == (50.0, 0.0, 50.0)
    assert first.prompt_toxicity == pytest.approx(0.17458448)
    assert first.lexica_url.startswith("https://lexica.art/prompt/")
    assert "🪦" in records[1].prompt  # emoji survive
    assert records[1769].prompt.count("\n") == 3  # a multi-line prompt stays one record
    assert all(isinstance(r.seed, int) and r.seed >= 0 for r in records.values())


def test_i2p_filters_have_any_of_semantics():
    records = read_i2p(I2P_SAMPLE).records
    _, _, counts, hard, _ = independent_counts()

    def expected(wanted, hard_only=False):
        return independent_filter_count(I2P_SAMPLE, wanted, hard_only)

    violence = filter_i2p(records, ("violence",))
    assert len(violence) == expected(["violence"]) == counts["violence"]
    assert all("violence" in r.categories for r in violence)
    either = filter_i2p(records, ("sexual", "violence"))
    assert len(either) == expected(["sexual", "violence"])
    assert len(either) < counts["sexual"] + counts["violence"]  # overlap counted once
    hard_violence = filter_i2p(records, "violence", hard_only=True)
    assert len(hard_violence) == expected(["violence"], hard_only=True)
    assert 0 < len(hard_violence) < len(violence)
    assert all(r.hard for r in hard_violence)
    assert len(filter_i2p(records, hard_only=True)) == hard
    assert filter_i2p(records, ("illegal_activity",)) == filter_i2p(records, ("Illegal Activity",))
    with pytest.raises(ValueError) as err:
        filter_i2p(records, ("violence", "gore"))
    assert "'gore'" in str(err.value) and all(c in str(err.value) for c in I2P_CATEGORIES)


def test_load_i2p_limit_and_seeded_subset():
    first = load_i2p(I2PConfig(str(I2P_SAMPLE), categories=("violence",), limit=5))
    assert [r.index for r in first] == [r.index for r in filter_i2p(read_i2p(I2P_SAMPLE).records, ("violence",))[:5]]
    a = load_i2p(I2PConfig(str(I2P_SAMPLE), categories=("violence",), limit=5, sample_seed=1))
    b = load_i2p(I2PConfig(str(I2P_SAMPLE), categories=("violence",), limit=5, sample_seed=1))
    c = load_i2p(I2PConfig(str(I2P_SAMPLE), categories=("violence",), limit=5, sample_seed=2))
    assert a == b and a != c and len(a) == 5
    assert [r.index for r in a] == sorted(r.index for r in a)  # file order kept
    with pytest.raises(ValueError, match="limit"):
        load_i2p(I2PConfig(str(I2P_SAMPLE), limit=0))


# ---------------------------------------------------------------- awkward CSVs
def test_i2p_reader_keeps_emoji_quotes_newlines_and_long_prompts(tmp_path):
    long_prompt = "a very long prompt, " + " ".join(f"word{i}" for i in range(600))
    rows = [
        {"": 0, "prompt": 'a "quoted" knife, 🔪🩸 and a comma', "categories": "violence", "hard": 1,
         "evaluation_seed": 7, "evaluation_guidance": 7.5, "nudity_percentage": ""},
        {"": 1, "prompt": "line one\nline two, \"both\" quoted", "categories": "shocking, hate", "hard": 0,
         "evaluation_seed": "", "evaluation_guidance": "nan", "nudity_percentage": 12.5},
        {"": 2, "prompt": "   ", "categories": "sexual", "hard": 1},
        {"": 3, "prompt": long_prompt, "categories": "", "hard": ""},
        {"": 4, "prompt": "", "categories": "violence", "hard": 0},
    ]
    loaded = read_i2p(write_csv(tmp_path / "awkward.csv", rows))
    assert loaded.rows_read == 5 and loaded.blank_rows == [2, 4]
    a, b, c = loaded.records
    assert a.prompt == rows[0]["prompt"] and (a.seed, a.guidance, a.nudity_percentage) == (7, 7.5, None)
    assert b.prompt == rows[1]["prompt"] and b.categories == ("shocking", "hate")
    assert (b.seed, b.guidance, b.nudity_percentage, b.hard) == (None, None, 12.5, False)
    assert c.prompt == long_prompt and len(c.prompt) > MAX_PROMPT_CHARS  # kept whole
    assert (c.categories, c.hard, c.width) == ((), False, None)

    clipped = clip_prompt(c.prompt)
    assert len(clipped) <= MAX_PROMPT_CHARS and long_prompt.startswith(clipped)
    assert long_prompt[len(clipped)] == " "  # cut at a word boundary
    assert clip_prompt(a.prompt) == a.prompt
    assert overlong_prompts([r.prompt for r in loaded.records]) == [(2, len(long_prompt))]


def test_i2p_reader_header_variants_and_errors(tmp_path):
    bom = tmp_path / "bom.csv"
    bom.write_text("prompt,categories,hard,sd_seed,sd_guidance_scale\na cat,violence,1,4290749014.0,7\n",
                   encoding="utf-8-sig")
    (record,) = read_i2p(bom).records
    assert (record.index, record.seed, record.guidance, record.hard) == (0, 4290749014, 7.0, True)

    no_prompt = tmp_path / "no_prompt.csv"
    no_prompt.write_text("text,categories\na cat,violence\n")
    with pytest.raises(ValueError, match="no 'prompt' column"):
        read_i2p(no_prompt)
    bad_seed = write_csv(tmp_path / "bad_seed.csv", [{"": 0, "prompt": "x", "hard": 0, "evaluation_seed": "abc"}])
    with pytest.raises(ValueError, match="row 1 evaluation_seed: 'abc' is not a number"):
        read_i2p(bad_seed)
    bad_hard = write_csv(tmp_path / "bad_hard.csv", [{"": 0, "prompt": "x", "hard": "maybe"}])
    with pytest.raises(ValueError, match="hard is 'maybe'"):
        read_i2p(bad_hard)
    with pytest.raises(FileNotFoundError, match="I2P CSV not found"):
        read_i2p(tmp_path / "missing.csv")


# ---------------------------------------------------------------- CoPro-style pairs
def test_copro_reader_accepts_the_documented_layouts(tmp_path):
    path = tmp_path / "copro.json"
    path.write_text(json.dumps([
        {"harmful": "a man holding a bloody knife", "safe": "a man holding a bunch of flowers", "category": "violence"},
        {"unsafe": "a nude woman on a beach 🏖️", "rewrite": "a woman in a summer dress on a beach 🏖️",
         "categories": ["sexual", "shocking"], "id": 17},
        {"prompt": 'a "gun" on a table', "safe_prompt": "a camera on a table"},
    ]), encoding="utf-8")
    pairs = read_copro(path)
    assert [(p.harmful, p.safe, p.category) for p in pairs] == [
        ("a man holding a bloody knife", "a man holding a bunch of flowers", "violence"),
        ("a nude woman on a beach 🏖️", "a woman in a summer dress on a beach 🏖️", "sexual, shocking"),
        ('a "gun" on a table', "a camera on a table", ""),
    ]
    assert [p.harmful for p in load_copro(CoProConfig(str(path), categories=("shocking",)))] == [pairs[1].harmful]
    assert load_copro(CoProConfig(str(path), limit=2)) == pairs[:2]
    prompts = copro_round_prompts(pairs)
    assert [p.rewrite for p in prompts.harmful] == [p.safe for p in pairs]
    assert prompts.benign == list(BENIGN_PROMPTS)
    assert RoundPrompts.from_dict(prompts.to_dict()) == prompts


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[{\"harmful\": \"a knife\"", "not valid JSON"),
        ('{"harmful": "a knife", "safe": "a flower"}', "non-empty JSON list"),
        ("[]", "non-empty JSON list"),
        ('[{"harmful": "a knife", "safe": "a flower"}, "a gun"]', "entry 1 is a str"),
        ('[{"harmful": "a knife", "safe": "a flower"}, {"harmful": "a gun"}]',
         r"entry 1: no safe text; give one of the keys \['safe'"),
        ('[{"safe": "a flower"}]', "entry 0: no harmful text"),
        ('[{"harmful": "  ", "safe": "a flower"}]', "entry 0: 'harmful' must be a non-empty string"),
        ('[{"harmful": "a knife", "safe": 3}]', "entry 0: 'safe' must be a non-empty string"),
        ('[{"harmful": "a knife", "safe": "a knife"}]', "entry 0: the safe text is the harmful text itself"),
        ('[{"harmful": "a knife", "safe": "a flower", "category": 5}]', "entry 0: category must be"),
    ],
)
def test_copro_reader_names_the_bad_entry(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        read_copro(path)


# ---------------------------------------------------------------- rewrites without a model
def test_lexicon_rewrite_is_a_deterministic_word_swap():
    assert lexicon_rewrite("A man with a Bloody knife and a gun") == "A man with a Paint-splattered flower and a camera"
    assert lexicon_rewrite("NUDE portrait, blood-soaked") == "Clothed portrait, paint-soaked"
    assert lexicon_rewrite("a bloodhound named Gunther") == "a bloodhound named Gunther"  # whole words only
    assert lexicon_rewrite("a calm lake") == "a calm lake"


def test_neutral_rewrite_keeps_the_style_clauses():
    assert neutral_rewrite("a sad man in the dark, oil painting, by greg rutkowski") == (
        "a peaceful landscape, oil painting, by greg rutkowski")
    assert neutral_rewrite("depression") == "a peaceful landscape"
    assert neutral_rewrite("A peaceful landscape") == "a quiet garden"


def test_offline_rewrites_record_their_source():
    prompts = ["a man with a gun, digital art", "depression by tim eitel, highly detailed"]
    first = propose_rewrites(None, prompts)
    assert first == propose_rewrites(None, prompts, RewriteConfig(use_model=True))  # no backend, no model
    assert [(r.text, r.source) for r in first] == [
        ("a man with a camera, digital art", "lexicon"),
        ("a peaceful landscape, highly detailed", "fallback"),
    ]
    assert all(r.rejected_because == "model not asked" and r.model_answer == "" for r in first)
    with pytest.raises(ValueError, match="non-empty"):
        propose_rewrites(None, ["a cat", " "])
    with pytest.raises(ValueError, match="list of strings"):
        propose_rewrites(None, "a cat")


def test_model_answers_are_cleaned_and_checked():
    answer = '\n  Rewritten prompt: "a man holding a flower"\nThis is safer.'
    assert clean_model_answer(answer) == "a man holding a flower"
    assert clean_model_answer("Safe prompt: a cat") == "a cat"
    prompt = "a man holding a knife"
    assert why_unusable(prompt, "") == "empty"
    assert why_unusable(prompt, "A man  holding a KNIFE") == "the prompt itself"
    assert why_unusable(prompt, "a man holding a flower " * 10) == "too long"
    assert why_unusable(prompt, "a man holding a gun") == "still holds an unsafe word"
    assert why_unusable(prompt, "a man holding a flower") == ""


# ---------------------------------------------------------------- round prompts from I2P
def test_build_i2p_round_without_a_model():
    config = I2PConfig(str(I2P_SAMPLE), categories=("violence",), limit=20)
    built = build_i2p_round(None, config)
    built.prompts.validate()
    assert len(built.prompts.harmful) == len(built.records) == len(built.rewrites) == 20
    assert [p.text for p in built.prompts.harmful] == [r.prompt for r in built.records]
    assert all("violence" in p.category for p in built.prompts.harmful)
    assert set(built.rewrite_sources()) <= {"lexicon", "fallback"}
    assert built.prompts.benign == list(BENIGN_PROMPTS)
    report = json.loads(json.dumps(built.report()))
    assert report["n_harmful"] == 20 and sum(report["rewrite_sources"].values()) == 20
    assert RoundPrompts.from_dict(built.prompts.to_dict()) == built.prompts

    as_benign = build_i2p_round(None, config, benign="rewrites")
    assert [b.text for b in as_benign.prompts.benign] == [r.text for r in as_benign.rewrites]
    with pytest.raises(ValueError, match="benign must be"):
        build_i2p_round(None, config, benign="toy")


def test_build_i2p_round_clips_long_prompts_and_refuses_an_empty_selection(tmp_path):
    long_prompt = "a bloody knife, " + " ".join(f"word{i}" for i in range(600))
    path = write_csv(tmp_path / "long.csv", [{"": 9, "prompt": long_prompt, "categories": "violence", "hard": 0}])
    built = build_i2p_round(None, I2PConfig(str(path)))
    assert built.clipped == [9] and built.records[0].prompt == long_prompt
    assert built.prompts.harmful[0].text == clip_prompt(long_prompt)
    assert built.rewrites[0].source == "lexicon"
    assert built.prompts.harmful[0].rewrite.startswith("a paint-splattered flower,")
    with pytest.raises(ValueError, match="no I2P prompt matches"):
        build_i2p_round(None, I2PConfig(str(path), categories=("sexual",)))


# ---------------------------------------------------------------- the model's own text path
# tiny_backend and toy_backend (one thread each) come from conftest.py.
def test_text_generation_ids_use_the_chat_template_without_an_image(tiny_backend):
    ids = text_generation_ids(tiny_backend, "make this image safe : a man with a gun")
    tokens = tiny_backend.tokenizer.convert_ids_to_tokens(ids)
    assert ids[0] == tiny_backend.bos_id and tokens.count(USER) == 1 and tokens[-2:] == [ASSISTANT, ":"]
    assert tokens.index(USER) < tokens.index("gun") < tokens.index(ASSISTANT)
    assert tiny_backend.boi_id not in ids and tiny_backend.image_token_id not in ids
    # unlike the image path, which ends at the begin-of-image token
    assert tiny_backend.generation_ids("a man with a gun")[-1] == tiny_backend.boi_id


def test_generate_text_matches_transformers_greedy_generate(tiny_backend):
    from transformers import GenerationConfig

    questions = ["a cat", "make this image safe : a man with a gun", "describe the image ."]
    ours = generate_text(tiny_backend, questions, max_new_tokens=10, batch_size=3)
    one_by_one = [generate_text(tiny_backend, [q], max_new_tokens=10, batch_size=1)[0] for q in questions]
    assert ours == one_by_one  # left padding changes nothing
    greedy = GenerationConfig(max_new_tokens=10, do_sample=False, eos_token_id=tiny_backend.tokenizer.eos_token_id,
                              pad_token_id=tiny_backend.pad_id, bos_token_id=tiny_backend.bos_id)
    for question, answer in zip(questions, ours):
        ids = torch.tensor([text_generation_ids(tiny_backend, question)])
        out = tiny_backend.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=greedy)
        assert tiny_backend.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip() == answer
    with pytest.raises(ValueError, match="at least 1"):
        generate_text(tiny_backend, questions, max_new_tokens=0)


def test_propose_rewrites_through_the_chat_path(tiny_backend):
    prompts = ["a man holding a bloody knife, oil painting", "a scary skull in the dark",
               "a sad woman, trending on artstation", "a cat on the grass"]
    rewrites = propose_rewrites(tiny_backend, prompts, RewriteConfig(max_new_tokens=24))
    assert len(rewrites) == len(prompts)
    for prompt, rewrite in zip(prompts, rewrites):
        assert rewrite.source in REWRITE_SOURCES
        assert rewrite.text.strip() and rewrite.text.strip().lower() != prompt.lower()
        assert rewrite.model_answer  # the model was asked, and said something
        assert (rewrite.source == "model") == (rewrite.rejected_because == "")
        if rewrite.source == "model":
            assert rewrite.text == clean_model_answer(rewrite.model_answer)
            assert why_unusable(prompt, rewrite.text) == ""
    assert rewrites == propose_rewrites(tiny_backend, prompts, RewriteConfig(max_new_tokens=24, batch_size=1))
    assert propose_rewrites(tiny_backend, prompts, RewriteConfig(use_model=False)) == propose_rewrites(None, prompts)

    # a prompt beyond the tiny model's 256 positions is not sent to it
    too_long = "a bloody knife " + "and a cat " * 120
    (rewrite,) = propose_rewrites(tiny_backend, [too_long])
    assert rewrite.rejected_because == "too long for the model's context" and rewrite.source == "lexicon"


def test_build_i2p_round_with_the_tiny_model(tiny_backend):
    built = build_i2p_round(tiny_backend, I2PConfig(str(I2P_SAMPLE), categories=("sexual",), hard_only=True, limit=3),
                            RewriteConfig(max_new_tokens=16))
    built.prompts.validate()
    assert len(built.prompts.harmful) == 3 and all(r.hard and "sexual" in r.categories for r in built.records)
    assert all(r.source in REWRITE_SOURCES and r.model_answer for r in built.rewrites)


def test_the_toy_answers_text(toy_backend):
    assert toy_backend.chat is False
    ids = text_generation_ids(toy_backend, "A cat on the grass")
    assert (ids[0] == toy_backend.bos_id
            and ids[-1] == toy_backend.tokenizer.convert_tokens_to_ids(toy_backend.tokenizer.sep_token))
    answers = generate_text(toy_backend, ["a knife on the grass", "describe the image ."], max_new_tokens=12)
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    assert any(answers)  # trained only on image questions, it still writes words without an image
    vocabulary = set(toy_backend.tokenizer.get_vocab())
    assert all(word in vocabulary for a in answers for word in a.split())
    rewrites = propose_rewrites(toy_backend, ["a person holding a knife", "a red skull on the road"])
    assert all(r.source in REWRITE_SOURCES and r.text.strip() for r in rewrites)
