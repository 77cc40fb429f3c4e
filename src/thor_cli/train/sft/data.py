"""SFT data: records -> ``input_ids`` + ``labels`` (-100 where the model must not learn).

What is trained on: exactly what the model should learn to write. Prompt tokens and tool outputs
(the spliced ```output block, the ``<response>`` block) get label -100; everything the model wrote
(text and code cells, whoever wrote them: policy, critic or data — ``Turn.learnable``), fences and
the end-of-turn token included, keeps its id as label. ``completion_mask`` is the RL mask (policy
samples only) and is never used here.

Two record kinds are read:

- Trajectory records (``thor eval``/``gen``/``rl``): ``trajectory.turns``. When the record's
  ``token_source.tokenizer`` equals the training tokenizer's fingerprint and every turn has ids,
  the ids are used unchanged (token-in, token-out): ``prompt_ids + turns[].ids``. Otherwise each
  segment is tokenized on its own (the prompt with the chat template, rebuilt from ``question`` via
  the protocol's user message as the rollout engine does; each turn's text alone), so mask
  boundaries fall exactly on segment boundaries, and a finished trajectory gets the end-of-turn
  token (its text never shows it). Dropped self-corrections live in ``trajectory.retries`` and are
  never trained on.
- Chat records with ``messages`` (OpenAI shape, tool results as ``tool`` messages): see chat.py.

Records that cannot be used are skipped with a counted reason (``Unusable``): ``no_trajectory``,
``error`` (the record has an ``error``; ``include_errors`` keeps it), ``unfinished`` (stop reason
max_tokens, context_overflow, max_tool_calls or round_done; ``include_unfinished`` keeps it, with
no end-of-turn token added), ``too_long`` (over ``max_length``; ``truncate`` cuts instead),
``all_masked``, ``other_tokenizer`` (ids from another tokenizer with ``retokenize=False``),
``wrong_answer`` (with ``correct_only``: a record whose ``grade.correct`` is not true — rejection
sampling over ``thor eval``/``gen`` output).
Damaged records (wrong types, ids that disagree with ``completion_ids``) raise ``InputError``
naming file, line and field.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from thor_cli.errors import InputError
from thor_cli.grading import is_code
from thor_cli.records.jsonl import InputRecord
from thor_cli.records.schema import Trajectory
from thor_cli.rollout.protocols import get_protocol
from thor_cli.rollout.tokens import Tok

IGNORE = -100
FINISHED = ("answer", "eos")  # stop reasons of a trajectory that ended on its own


class Unusable(Exception):
    """A record that cannot be trained on; ``reason`` is the counted key."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


@dataclass(frozen=True)
class DataOptions:
    protocol: str = "thor"  # for chat records (trajectories name their own)
    max_length: int | None = 4096
    truncate: bool = False  # cut records over max_length (else: skip them as too_long)
    include_unfinished: bool = False
    include_errors: bool = False
    retokenize: bool = True  # re-tokenize records whose ids another tokenizer made (else skip them)
    system_prompt: str | None = None
    tools: bool = True  # rebuilt prompts use the protocol's with-tools user message
    correct_only: bool = False  # train only on records graded correct


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]
    where: str
    how: str  # "ids" (reused) | "retokenized" | "messages"

    @property
    def trained(self) -> int:
        return sum(lab != IGNORE for lab in self.labels)


@dataclass
class DataReport:
    """Counts for the summary: used records by how, re-tokenized by why, skipped by reason."""

    read: int = 0
    used: Counter[str] = field(default_factory=Counter)
    retokenized: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    first_skip: dict[str, str] = field(default_factory=dict)  # reason -> "file:line: detail"
    truncated: int = 0
    tokens: int = 0
    trained_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"read": self.read, "used": dict(self.used), "retokenized": dict(self.retokenized),
                "skipped": dict(self.skipped), "first_skip": dict(self.first_skip), "truncated": self.truncated,
                "tokens": self.tokens, "trained_tokens": self.trained_tokens}

    def line(self) -> str:
        used = sum(self.used.values())
        parts = [f"{self.read} records", f"{used} used ({self.tokens} tokens, {self.trained_tokens} trained)"]
        if self.used.get("ids"):
            parts.append(f"{self.used['ids']} with their own ids")
        if self.retokenized:
            why = ", ".join(f"{n} {r}" for r, n in self.retokenized.most_common())
            parts.append(f"{sum(self.retokenized.values())} re-tokenized ({why})")
        if self.used.get("messages"):
            parts.append(f"{self.used['messages']} chat records")
        if self.truncated:
            parts.append(f"{self.truncated} cut at max_length")
        if self.skipped:
            why = ", ".join(f"{n} {r}" for r, n in self.skipped.most_common())
            parts.append(f"{sum(self.skipped.values())} skipped ({why})")
        return "; ".join(parts)


def _int_list(value: Any, *, where: InputRecord, fld: str) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in value):
        raise InputError("expected a list of integer token ids", path=where.path, line=where.line, field=fld,
                         hint="write the record with thor's rollout engine, or drop the field")
    return value


def end_of_turn_id(tokenizer: Any) -> int:
    """The token that ends an assistant turn: the tokenizer's EOS (``<|im_end|>`` for ChatML models),
    which is also what the rollout engine stops on."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise InputError("the tokenizer has no EOS token, so a trained turn could not end",
                         hint="use a tokenizer with an eos_token (set it in tokenizer_config.json)")
    return int(eos)


class SFTData:
    """Turns records into ``Example``s for one tokenizer (see the module docstring)."""

    def __init__(self, tokenizer: Any, opts: DataOptions) -> None:
        self.tok = Tok(tokenizer)
        self.opts = opts
        self.eot = end_of_turn_id(tokenizer)
        self.vocab = len(tokenizer)

    # ---- one record ---------------------------------------------------------------------------

    def example(self, rec: InputRecord) -> Example:
        data = rec.data
        if "trajectory" in data and data["trajectory"] is not None:
            ex = self._from_trajectory(rec)
        elif "messages" in data:
            from thor_cli.train.sft.chat import chat_segments

            prompt, segments = chat_segments(self, rec)
            ex = self._assemble(prompt, segments, rec, "messages")
        else:
            raise Unusable("no_trajectory", "neither a \"trajectory\" nor \"messages\"")
        return self._fit(ex)

    def prompt_for(self, rec: dict[str, Any], protocol: str) -> list[int]:
        """The prompt the rollout engine would build for this problem (RolloutEngine.prompt_ids),
        from ``prompt``/``question``/``messages``; never from ids another tokenizer made."""
        problem = {k: v for k, v in rec.items() if k != "prompt_ids"}
        user = problem.get("prompt")
        q = problem.get("question")
        if not isinstance(user, str) or (is_code(problem) and q is not None):
            user = get_protocol(protocol).user_message(str(q), self.opts.tools) if q is not None else None
        return self.tok.prompt_ids(problem, user, self.opts.system_prompt)

    def _from_trajectory(self, rec: InputRecord) -> Example:
        data, where = rec.data, rec
        raw = data["trajectory"]
        if not isinstance(raw, dict) or not isinstance(raw.get("turns", []), list):
            raise InputError("expected an object with a list of turns", path=where.path, line=where.line,
                             field="trajectory", hint="write the record with thor eval/gen/rl")
        for i, t in enumerate(raw.get("turns", [])):
            if not isinstance(t, dict) or t.get("kind") not in ("text", "code", "output") or not isinstance(
                    t.get("text"), str):
                raise InputError("expected {kind: text|code|output, text: string, ids: [...]}", path=where.path,
                                 line=where.line, field=f"trajectory.turns[{i}]", hint="fix or drop the record")
            if "ids" in t:
                _int_list(t["ids"], where=where, fld=f"trajectory.turns[{i}].ids")
        try:
            traj = Trajectory.from_dict(raw)
        except InputError as e:
            raise InputError(e.message.split(": ", 1)[-1], path=where.path, line=where.line,
                             field=e.field or "trajectory", hint=e.hint) from None
        except (TypeError, ValueError) as e:
            raise InputError(f"cannot read it ({e})", path=where.path, line=where.line, field="trajectory",
                             hint="write the record with thor eval/gen/rl") from None
        if self.opts.correct_only and not (isinstance(data.get("grade"), dict) and data["grade"].get("correct") is True):
            raise Unusable("wrong_answer", "grade.correct is not true" if "grade" in data else "no grade")
        if data.get("error") and not self.opts.include_errors:
            raise Unusable("error", str(data["error"])[:200])
        finished = traj.stop_reason in FINISHED
        if not finished and not self.opts.include_unfinished:
            raise Unusable("unfinished", f"stop_reason {traj.stop_reason}")
        if not traj.turns:
            raise Unusable("no_trajectory", "the trajectory has no turns")

        why = self._why_not_ids(data, traj)
        if why is None:
            return self._with_ids(rec, traj)
        if not self.opts.retokenize:
            raise Unusable("other_tokenizer", why)
        segments = [(self.tok.encode(t.text), t.learnable) for t in traj.turns]
        if finished:
            segments.append(([self.eot], True))
        ex = self._assemble(self.prompt_for(data, traj.protocol or "thor"), segments, rec, "retokenized")
        ex.how = f"retokenized:{why}"
        return ex

    def _why_not_ids(self, data: dict[str, Any], traj: Trajectory) -> str | None:
        """None when the record's own ids can be reused, else why not."""
        if any(not t.ids for t in traj.turns if t.text):
            return "no ids"
        source = data.get("token_source")
        if not isinstance(source, dict) or not isinstance(source.get("tokenizer"), str):
            return "no token_source"
        if source["tokenizer"] != self.tok.fingerprint:
            return "other tokenizer"
        return None

    def _with_ids(self, rec: InputRecord, traj: Trajectory) -> Example:
        data = rec.data
        comp = [i for t in traj.turns for i in t.ids]
        if "completion_ids" in data and data["completion_ids"] is not None:
            if _int_list(data["completion_ids"], where=rec, fld="completion_ids") != comp:
                raise InputError("does not equal the concatenation of trajectory.turns[].ids", path=rec.path,
                                 line=rec.line, field="completion_ids",
                                 hint="the record was edited or damaged: rewrite it with thor")
        prompt = data.get("prompt_ids")
        prompt_ids = (list(_int_list(prompt, where=rec, fld="prompt_ids")) if prompt is not None
                      else self.prompt_for(data, traj.protocol or "thor"))
        labels = [IGNORE] * len(prompt_ids)
        for t in traj.turns:
            labels.extend(t.ids if t.learnable else [IGNORE] * len(t.ids))
        ids = prompt_ids + comp
        bad = next((i for i in ids if not 0 <= i < self.vocab), None)
        if bad is not None:
            raise InputError(f"token id {bad} is outside the tokenizer's {self.vocab} ids", path=rec.path,
                             line=rec.line, field="prompt_ids",
                             hint="the token_source fingerprint is wrong: rewrite the record with thor")
        return Example(ids, labels, rec.where(), "ids")

    def _assemble(self, prompt: list[int], segments: list[tuple[list[int], bool]], rec: InputRecord,
                  how: str) -> Example:
        ids = list(prompt)
        labels = [IGNORE] * len(prompt)
        for seg, learn in segments:
            ids.extend(seg)
            labels.extend(seg if learn else [IGNORE] * len(seg))
        return Example(ids, labels, rec.where(), how)

    def _fit(self, ex: Example) -> Example:
        limit = self.opts.max_length
        if limit is not None and len(ex.input_ids) > limit:
            if not self.opts.truncate:
                raise Unusable("too_long", f"{len(ex.input_ids)} tokens > max_length {limit}")
            ex.input_ids, ex.labels = ex.input_ids[:limit], ex.labels[:limit]
            ex.how += "+cut"
        # the first label is never predicted (the model shifts labels by one)
        if all(lab == IGNORE for lab in ex.labels[1:]):
            raise Unusable("all_masked", "no token left to train on")
        return ex


def build_examples(records: Iterable[InputRecord], tokenizer: Any, opts: DataOptions, *,
                   fail_on_error: bool = False) -> tuple[list[Example], DataReport]:
    """Every usable record as an Example, and the report of what was used, re-tokenized, skipped.
    ``fail_on_error``: the first unusable record raises InputError naming it."""
    data = SFTData(tokenizer, opts)
    report = DataReport()
    out: list[Example] = []
    for rec in records:
        report.read += 1
        try:
            ex = data.example(rec)
        except Unusable as u:
            if fail_on_error:
                raise InputError(f"cannot train on this record: {u}", path=rec.path, line=rec.line,
                                 hint="fix or drop it, or run without --fail-on-error to skip and count it") from None
            report.skipped[u.reason] += 1
            report.first_skip.setdefault(u.reason, f"{rec.where()}: {u.detail}")
            continue
        kind, _, why = ex.how.partition(":")
        if ex.how.endswith("+cut"):
            report.truncated += 1
            kind, why = kind.removesuffix("+cut"), why.removesuffix("+cut")
        report.used[kind] += 1
        if why:
            report.retokenized[why] += 1
        report.tokens += len(ex.input_ids)
        report.trained_tokens += ex.trained
        out.append(ex)
    return out, report
