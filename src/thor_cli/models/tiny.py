"""A tiny random Qwen2-style model and a byte-level BPE tokenizer with a ChatML template.

Builds in about a second on CPU with no network: for tests, smoke runs and benchmarks of
engine overhead. The weights are random, so it writes gibberish; what matters is that it is a
real transformers checkpoint (safetensors, tokenizer, chat template) that every backend loads.
"""

from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

_CORPUS = [
    "Let's solve this step by step. First compute the sum, then check it with Python.",
    "```python\nimport sympy as sp\nx = sp.symbols('x')\nprint(sp.solve(x**2 - 4, x))\n```\n```output\n[-2, 2]\n```",
    "The answer is \\boxed{42}. <think>reasoning</think> <code>print(1+1)</code> <answer>2</answer>",
    "<search>capital of France</search> <response>Paris is the capital.</response>",
    "def add(a, b):\n    return a + b\n\nassert add(1, 2) == 3\n",
    "0 1 2 3 4 5 6 7 8 9 + - * / = ( ) [ ] { } < > : ; , . ! ? ' \" \\ # $ % ^ & _ | ~ `",
]


def build_tiny_model(path: str | Path, *, vocab_size: int = 512, hidden_size: int = 64, layers: int = 2,
                     max_position_embeddings: int = 2048, seed: int = 0) -> Path:
    """Write a tiny random causal LM and its tokenizer to ``path``; return the path."""
    import sys

    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    if not sys.stderr.isatty():
        transformers.utils.logging.disable_progress_bar()
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token=None, unk_token=None)
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)

    torch.manual_seed(seed)
    eos, pad = fast.convert_tokens_to_ids("<|im_end|>"), fast.convert_tokens_to_ids("<|endoftext|>")
    assert isinstance(eos, int) and isinstance(pad, int)  # one token each (a list only for a list)
    config = Qwen2Config(
        vocab_size=len(fast), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=max_position_embeddings, tie_word_embeddings=True,
        eos_token_id=eos, pad_token_id=pad, bos_token_id=None,
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    model.save_pretrained(out)
    return out
