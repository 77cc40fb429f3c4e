"""Chat records (OpenAI messages) laid out as thor's rollout engine infers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sft_helpers import rec

from thor_cli.errors import InputError
from thor_cli.train.sft.data import IGNORE, DataOptions, SFTData, Unusable


def chat(code_arg: Any = None) -> dict[str, Any]:
    args = json.dumps({"code": "print(6*7)"}) if code_arg is None else code_arg
    return {"messages": [
        {"role": "system", "content": "Be exact."},
        {"role": "user", "content": "What is 6*7?"},
        {"role": "assistant", "content": "Compute it.",
         "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "python", "arguments": args}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "42\n"},
        {"role": "assistant", "content": "So \\boxed{42}."},
    ]}


def split(tok: Any, ex: Any) -> tuple[str, str, str]:
    """(prompt text, trained text, masked completion text)."""
    n = next(i for i, lab in enumerate(ex.labels) if lab != IGNORE)
    trained = tok.decode([i for i in ex.labels if i != IGNORE])
    masked = tok.decode([i for i, lab in zip(ex.input_ids[n:], ex.labels[n:], strict=True) if lab == IGNORE])
    return tok.decode(ex.input_ids[:n]), trained, masked


@pytest.mark.parametrize(("protocol", "call", "result"), [
    ("thor", "Compute it.\n```python\nprint(6*7)\n```\n```output", "\n42\n```\n"),
    ("tapo", "Compute it.\n<code>\nprint(6*7)\n</code>", "\n<response>\n42\n</response>\n"),
])
def test_tool_calls_become_the_protocols_cells_and_results_are_masked(tok: Any, protocol: str, call: str,
                                                                     result: str) -> None:
    ex = SFTData(tok, DataOptions(protocol=protocol)).example(rec(chat()))
    prompt, trained, masked = split(tok, ex)
    want_prompt = tok.apply_chat_template(chat()["messages"][:2], add_generation_prompt=True, tokenize=False)
    assert prompt == want_prompt  # the prompt the engine conditions on
    assert trained == call + "So \\boxed{42}.<|im_end|>"  # the end-of-turn token is trained
    assert masked == result
    assert ex.how == "messages"


def test_plain_text_arguments_and_content_parts(tok: Any) -> None:
    r = chat(code_arg="print(6*7)")
    r["messages"][4]["content"] = [{"type": "text", "text": "So \\boxed{42}."}]
    _, trained, _ = split(tok, SFTData(tok, DataOptions()).example(rec(r)))
    assert trained.endswith("```output" + "So \\boxed{42}.<|im_end|>")


def test_unusable_and_bad_chats(tok: Any) -> None:
    d = SFTData(tok, DataOptions())
    r = chat()
    r["messages"] = r["messages"][:4]
    with pytest.raises(Unusable, match="unfinished"):
        d.example(rec(r))
    ex = SFTData(tok, DataOptions(include_unfinished=True)).example(rec(r))
    assert ex.input_ids[-1] != tok.eos_token_id and ex.labels[-1] == IGNORE
    r = chat()
    r["messages"].append({"role": "user", "content": "and 7*8?"})
    with pytest.raises(Unusable, match="multi_turn"):
        d.example(rec(r))
    with pytest.raises(Unusable, match="no_trajectory"):
        d.example(rec({"messages": [{"role": "user", "content": "hi"}]}))
    with pytest.raises(InputError, match=r'data\.jsonl:4: field "messages\[2\]\.tool_calls\[0\]\.function\.arguments"'):
        d.example(rec(chat(code_arg=json.dumps({"query": "x"})), 4))
    with pytest.raises(InputError, match=r'data\.jsonl:1: field "messages\[1\]"'):
        d.example(rec({"messages": [{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}]}))
    with pytest.raises(InputError, match=r'field "messages\[1\]\.content"'):
        d.example(rec({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": 5}]}))
