"""Chat records (``messages`` in the OpenAI shape) laid out the way thor's rollout engine infers.

Layout (so the model is trained exactly as it will be run by ``thor eval``):

- prompt: the chat template over the messages before the first assistant message (system/user),
  with ``add_generation_prompt=True`` — the same ids the engine conditions on. Label -100.
- completion: every later assistant and tool message concatenated into ONE assistant
  continuation, each part tokenized on its own:
  - an assistant message's text: trained;
  - its ``tool_calls`` (``{"function": {"name", "arguments": "{\\"code\\": ...}"}}``) become the
    protocol's call text, trained: ``thor``: ````` ```python\\nCODE\\n```\\n```output `````;
    ``tapo``: ``<code>\\nCODE\\n</code>`` or ``<search> QUERY </search>``;
  - a ``tool`` message's content: the protocol's result format (``\\nRESULT\\n```\\n`` for thor,
    ``\\n<response>\\nRESULT\\n</response>\\n`` for tapo), label -100;
  - then the end-of-turn token (the tokenizer's EOS, e.g. ``<|im_end|>``), trained.
- A chat that ends on a tool message is unfinished (skipped unless ``include_unfinished``, then
  without the end-of-turn token); a user message after the first assistant one (a multi-turn
  chat) is skipped as ``multi_turn``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from thor_cli.errors import InputError
from thor_cli.records.jsonl import InputRecord
from thor_cli.rollout.protocols import ToolProtocol, get_protocol

if TYPE_CHECKING:
    from thor_cli.train.sft.data import SFTData

ROLES = ("system", "user", "assistant", "tool")


def _content(m: dict[str, Any], rec: InputRecord, i: int) -> str:
    c = m.get("content")
    if c is None:
        return ""
    if isinstance(c, str):
        return c
    if isinstance(c, list) and all(isinstance(p, dict) and isinstance(p.get("text"), str) for p in c):
        return "".join(p["text"] for p in c)  # OpenAI content parts: [{"type": "text", "text": ...}]
    raise InputError("expected a string (or a list of {type: text, text} parts)", path=rec.path, line=rec.line,
                     field=f"messages[{i}].content", hint="fix the record")


def call_text(proto: ToolProtocol, call: Any, rec: InputRecord, where: str) -> str:
    """An OpenAI tool call as the protocol's call text (what the model writes to call the tool)."""
    fn = call.get("function") if isinstance(call, dict) else None
    if not isinstance(fn, dict):
        raise InputError('expected {"type": "function", "function": {"name", "arguments"}}', path=rec.path,
                         line=rec.line, field=where, hint="fix the record")
    args = fn.get("arguments")
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip().startswith("{") else {"code": args}
        except json.JSONDecodeError:
            args = None
    if not isinstance(args, dict):
        raise InputError("arguments are not a JSON object", path=rec.path, line=rec.line,
                         field=f"{where}.function.arguments", hint='write {"code": "..."} or {"query": "..."}')
    name = str(fn.get("name") or "")
    if isinstance(args.get("code"), str) and name != "search":
        code = args["code"].strip("\n")
        if proto.name == "thor":
            return f"```python\n{code}\n```\n```output"
        return f"<code>\n{code}\n</code>"
    if isinstance(args.get("query"), str) and proto.name == "tapo":
        return f"<search> {args['query'].strip()} </search>"
    raise InputError(f"tool {name!r} with arguments {sorted(args)} has no form in protocol {proto.name!r}",
                     path=rec.path, line=rec.line, field=f"{where}.function.arguments",
                     hint='python calls need {"code"}; search calls need {"query"} and --protocol tapo')


def chat_segments(data: SFTData, rec: InputRecord) -> tuple[list[int], list[tuple[list[int], bool]]]:
    """(prompt ids, [(segment ids, trained?)]) of a chat record; see the module docstring."""
    from thor_cli.train.sft.data import Unusable

    msgs = rec.data["messages"]
    if not isinstance(msgs, list) or not msgs:
        raise InputError("expected a non-empty list of messages", path=rec.path, line=rec.line, field="messages",
                         hint='e.g. [{"role": "user", "content": ...}, {"role": "assistant", "content": ...}]')
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise InputError(f"expected an object with a role in {', '.join(ROLES)}", path=rec.path, line=rec.line,
                             field=f"messages[{i}]", hint="fix the record")
    first = next((i for i, m in enumerate(msgs) if m["role"] == "assistant"), None)
    if first is None:
        raise Unusable("no_trajectory", "no assistant message")
    head = msgs[:first]
    if any(m["role"] == "tool" for m in head):
        raise InputError("a tool message before the first assistant message", path=rec.path, line=rec.line,
                         field="messages", hint="tool results follow the assistant message that called the tool")
    proto = get_protocol(data.opts.protocol)
    prompt = data.tok.prompt_ids({"messages": [{"role": m["role"], "content": _content(m, rec, i)}
                                               for i, m in enumerate(head)]}, None, data.opts.system_prompt)
    segments: list[tuple[list[int], bool]] = []
    text = ""  # model-written text not yet tokenized (an assistant message and its calls are one part)
    for i, m in enumerate(msgs[first:], start=first):
        if m["role"] in ("user", "system"):
            raise Unusable("multi_turn", f"a {m['role']} message after the first assistant message")
        body = _content(m, rec, i)
        if m["role"] == "tool":
            if text:
                segments.append((data.tok.encode(text), True))
                text = ""
            segments.append((data.tok.encode(proto.output_template.replace("{result}", body.rstrip("\n"))), False))
            continue
        text += body
        calls = m.get("tool_calls") or []
        if not isinstance(calls, list):
            raise InputError("expected a list", path=rec.path, line=rec.line, field=f"messages[{i}].tool_calls",
                             hint="fix the record")
        for j, call in enumerate(calls):
            cell = call_text(proto, call, rec, f"messages[{i}].tool_calls[{j}]")
            text += ("\n" if text and not text.endswith("\n") else "") + cell
    if text:
        segments.append((data.tok.encode(text), True))
    if msgs[-1]["role"] == "tool":
        if not data.opts.include_unfinished:
            raise Unusable("unfinished", "the chat ends on a tool message")
    else:
        segments.append(([data.eot], True))
    return prompt, segments
