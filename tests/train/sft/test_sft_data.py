"""The SFT mask: what is trained on, token for token, on trajectories from the real rollout engine."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from sft_helpers import rec, rollout, thor_cell

from thor_cli.errors import InputError
from thor_cli.records.access import drop_ids
from thor_cli.records.schema import Trajectory
from thor_cli.train.sft.data import IGNORE, DataOptions, SFTData, Unusable, build_examples


def data(tok: Any, **kw: Any) -> SFTData:
    return SFTData(tok, DataOptions(**kw))


def check_turn_mask(r: dict[str, Any], ids: list[int], labels: list[int]) -> None:
    """Walk the turns: prompt masked, every output token -100, every model-written token kept."""
    n = len(r["prompt_ids"])
    assert labels[:n] == [IGNORE] * n
    pos = n
    for t in r["trajectory"]["turns"]:
        seg = slice(pos, pos + len(t["ids"]))
        assert ids[seg] == t["ids"]
        if t["kind"] == "output":
            assert labels[seg] == [IGNORE] * len(t["ids"]), t["text"]
        else:
            assert labels[seg] == t["ids"], t["text"]
        pos += len(t["ids"])
    assert pos == len(ids)


def test_thor_fences_several_cells_ids_used_unchanged(tok: Any) -> None:
    r = rollout(tok, [thor_cell("print(6)"), thor_cell("print(7)", "Next.\n"), "So \\boxed{42}"])
    traj = Trajectory.from_dict(r["trajectory"])
    assert [t.kind for t in traj.turns].count("output") == 2
    ex = data(tok).example(rec(r))
    assert ex.how == "ids"
    assert ex.input_ids == r["prompt_ids"] + r["completion_ids"]  # token-in, token-out
    check_turn_mask(r, ex.input_ids, ex.labels)
    assert ex.input_ids[-1] == tok.eos_token_id and ex.labels[-1] == tok.eos_token_id  # learns to stop
    trained = tok.decode([i for i in ex.labels if i != IGNORE])
    assert "```python\nprint(6)\n```\n```output" in trained  # fences the model wrote are trained
    assert "\n6\n```\n" not in trained  # the tool's output is not


def test_tapo_tags_response_masked(tok: Any) -> None:
    r = rollout(tok, ["<think>hm</think><code>print(3)</code>", "<answer>3</answer>"], protocol="tapo")
    ex = data(tok).example(rec(r))
    check_turn_mask(r, ex.input_ids, ex.labels)
    masked = tok.decode([i for i, lab in zip(ex.input_ids, ex.labels, strict=True) if lab == IGNORE][len(r["prompt_ids"]):])
    assert masked == "\n<response>\n3\n</response>\n"


def test_self_correction_retry_is_not_trained(tok: Any) -> None:
    r = rollout(tok, [thor_cell("print(fail)"), thor_cell("print(42)"), "So \\boxed{42}"])
    assert r["trajectory"]["retries"] and "fail" in r["trajectory"]["retries"][0]["dropped_text"]
    ex = data(tok).example(rec(r))
    check_turn_mask(r, ex.input_ids, ex.labels)
    assert "fail" not in tok.decode(ex.input_ids)
    # the dropped ids are nowhere in the trained sequence as a run
    dropped = r["trajectory"]["retries"][0]["dropped_ids"]
    text = ",".join(map(str, ex.input_ids))
    assert ",".join(map(str, dropped)) not in text


def test_critic_written_code_is_trained_though_not_a_policy_sample(tok: Any) -> None:
    r = rollout(tok, [thor_cell("print(42)"), "So \\boxed{42}"])
    code = next(t for t in r["trajectory"]["turns"] if t["kind"] == "code")
    code["author"] = "critic"
    start = len(r["prompt_ids"]) + sum(len(t["ids"]) for t in r["trajectory"]["turns"][:r["trajectory"]["turns"].index(code)])
    r["completion_mask"] = Trajectory.from_dict(r["trajectory"]).completion_mask
    assert 0 in r["completion_mask"]
    ex = data(tok).example(rec(r))
    assert ex.labels[start:start + len(code["ids"])] == code["ids"]


def test_retokenized_segments_fall_on_turn_boundaries(tok: Any) -> None:
    r = drop_ids(rollout(tok, [thor_cell("print(6)"), "So \\boxed{6}"]))
    ex = data(tok).example(rec(r))
    assert ex.how == "retokenized:no ids"
    pos = 0
    while ex.labels[pos] == IGNORE:
        pos += 1
    prompt = ex.input_ids[:pos]
    assert tok.decode(prompt).endswith("<|im_start|>assistant\n")
    for t in r["trajectory"]["turns"]:
        n = len(tok.encode(t["text"], add_special_tokens=False))
        seg = ex.input_ids[pos:pos + n]
        assert tok.decode(seg) == t["text"]
        assert ex.labels[pos:pos + n] == (seg if t["kind"] != "output" else [IGNORE] * n)
        pos += n
    assert ex.input_ids[pos:] == [tok.eos_token_id] and ex.labels[pos:] == [tok.eos_token_id]


def test_ids_of_another_tokenizer_are_never_reused(tok: Any) -> None:
    r = rollout(tok, [thor_cell("print(6)"), "So \\boxed{6}"])
    r["token_source"]["tokenizer"] = "0123456789abcdef"
    ex = data(tok).example(rec(r))
    assert ex.how == "retokenized:other tokenizer"
    with pytest.raises(Unusable) as e:
        data(tok, retokenize=False).example(rec(r))
    assert e.value.reason == "other_tokenizer"
    del r["token_source"]
    assert data(tok).example(rec(r)).how == "retokenized:no token_source"


def test_truncation_at_the_length_limit_keeps_the_mask_aligned(tok: Any) -> None:
    r = rollout(tok, [thor_cell("print(6)"), thor_cell("print(7)"), "So \\boxed{42}"])
    full = data(tok).example(rec(r))
    limit = len(r["prompt_ids"]) + len(r["completion_ids"]) // 2
    with pytest.raises(Unusable) as e:
        data(tok, max_length=limit).example(rec(r))
    assert e.value.reason == "too_long"
    cut = data(tok, max_length=limit, truncate=True).example(rec(r))
    assert cut.input_ids == full.input_ids[:limit] and cut.labels == full.labels[:limit]
    with pytest.raises(Unusable) as e:  # cut inside the prompt: nothing left to learn
        data(tok, max_length=len(r["prompt_ids"]), truncate=True).example(rec(r))
    assert e.value.reason == "all_masked"


def test_unfinished_and_failed_trajectories_are_skipped_unless_asked(tok: Any) -> None:
    r = rollout(tok, ["a long ramble " * 20], max_tokens=16)
    assert r["trajectory"]["stop_reason"] == "max_tokens"
    with pytest.raises(Unusable) as e:
        data(tok).example(rec(r))
    assert e.value.reason == "unfinished"
    ex = data(tok, include_unfinished=True).example(rec(r))
    assert ex.input_ids == r["prompt_ids"] + r["completion_ids"]
    assert ex.input_ids[-1] != tok.eos_token_id  # it never ended: no end-of-turn token is invented
    bad = copy.deepcopy(rollout(tok, ["So \\boxed{1}"]))
    bad["error"] = "BackendError: gone"
    with pytest.raises(Unusable) as e:
        data(tok).example(rec(bad))
    assert e.value.reason == "error"
    assert data(tok, include_errors=True).example(rec(bad)).how == "ids"


def test_bad_records_name_file_line_and_field(tok: Any) -> None:
    r = rollout(tok, [thor_cell("print(6)"), "So \\boxed{6}"])
    wrong = copy.deepcopy(r)
    wrong["trajectory"]["turns"][0]["ids"] = ["x"]
    with pytest.raises(InputError, match=r'data\.jsonl:7: field "trajectory\.turns\[0\]\.ids"'):
        data(tok).example(rec(wrong, 7))
    wrong = copy.deepcopy(r)
    wrong["trajectory"]["turns"][1]["kind"] = "thought"
    with pytest.raises(InputError, match=r'data\.jsonl:3: field "trajectory\.turns\[1\]"'):
        data(tok).example(rec(wrong, 3))
    wrong = copy.deepcopy(r)
    wrong["completion_ids"] = wrong["completion_ids"][:-1]
    with pytest.raises(InputError, match=r'data\.jsonl:2: field "completion_ids"'):
        data(tok).example(rec(wrong, 2))
    wrong = copy.deepcopy(r)
    wrong["trajectory"]["v"] = 99
    with pytest.raises(InputError, match=r'data\.jsonl:5: field "trajectory\.v".*upgrade'):
        data(tok).example(rec(wrong, 5))


def test_unusable_records_are_counted_by_reason_or_fatal(tok: Any) -> None:
    good = rollout(tok, [thor_cell("print(6)"), "So \\boxed{6}"])
    unfinished = rollout(tok, ["ramble " * 30], max_tokens=8)
    records = [rec(good, 1), rec({"id": "q", "question": "2+2?"}, 2), rec(unfinished, 3), rec(drop_ids(copy.deepcopy(good)), 4)]
    examples, report = build_examples(records, tok, DataOptions())
    assert len(examples) == 2
    assert report.read == 4
    assert dict(report.skipped) == {"no_trajectory": 1, "unfinished": 1}
    assert report.first_skip["no_trajectory"].startswith("data.jsonl:2")
    assert dict(report.retokenized) == {"no ids": 1}
    assert report.trained_tokens == sum(e.trained for e in examples)
    assert "2 skipped" in report.line() and "1 re-tokenized (1 no ids)" in report.line()
    with pytest.raises(InputError, match=r"data\.jsonl:2: cannot train on this record: no_trajectory"):
        build_examples(records, tok, DataOptions(), fail_on_error=True)


def test_correct_only_keeps_records_graded_correct(tok: Any) -> None:
    r = rollout(tok, ["So \\boxed{42}"])
    assert data(tok, correct_only=False).example(rec(r)).how == "ids"
    with pytest.raises(Unusable, match="no grade"):
        data(tok, correct_only=True).example(rec(r))
    r["grade"] = {"correct": False, "pred": "41", "gold": "42", "method": "numeric"}
    with pytest.raises(Unusable) as e:
        data(tok, correct_only=True).example(rec(r))
    assert e.value.reason == "wrong_answer"
    r["grade"]["correct"] = True
    assert data(tok, correct_only=True).example(rec(r)).how == "ids"
