"""The web pages: an editor with the examples and the job list (`/`), and one job's traced graph (`/jobs/<id>`).

The pages are static HTML and JavaScript that read everything through the JSON API (/v1/...): this module only
serves them, with the examples inlined as data. Every asset is ours (the graph layout library is vendored under
static/vendor, see static/VENDORED.md); the Content-Security-Policy allows nothing from another host and no
inline script, so text from a spec can never run as code."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from flask import Blueprint, Response, render_template, url_for

from api.routes import svc
from services.store import JobNotFound

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
EXAMPLES_DIR = HERE.parent / "examples"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


@dataclass(frozen=True)
class Example:
    """An example spec offered in the editor."""

    key: str
    title: str
    file: str
    featured: bool = False


EXAMPLES: tuple[Example, ...] = (
    Example("chain_rule", "Chain rule", "chain_rule.py", featured=True),
    Example("tutorial_conv", "Tutorial conv", "tutorial_conv.py", featured=True),
    Example("small_cnn", "Small CNN", "small_cnn.json", featured=True),
    Example("transformer_block", "Transformer block", "transformer_block.py", featured=True),
    Example("tutorial_first", "First tutorial", "tutorial_first.py"),
    Example("program_mlp", "MLP program", "program_mlp.py"),
    Example("module_class", "class ConvNet(nn.Module)", "module_class.py"),
    Example("gpt_lecture", "GPT lecture model (classes)", "gpt_lecture.py"),
    Example("nanogpt", "nanoGPT model.py (pasted whole)", "nanogpt.py"),
    Example("training_loop", "Training loop (its first step)", "training_loop.py"),
    Example("lstm_tagger", "LSTM tagger (PyTorch tutorial)", "lstm_tagger.py"),
    Example("dcgan_generator", "DCGAN generator step (PyTorch tutorial)", "dcgan_generator.py"),
    Example("transformer_tutorial", "nn.TransformerEncoder language model (PyTorch tutorial)", "transformer_tutorial.py"),
    Example("translation_transformer", "nn.Transformer translation model (PyTorch tutorial)", "translation_transformer.py"),
    Example("resnet_block", "ResNet block", "resnet_block.py"),
    Example("rnn_unrolled", "RNN through time (a loop)", "rnn_unrolled.py"),
    Example("resnet_block_json", "ResNet block (model spec)", "resnet_block.json"),
    Example("transformer_block_json", "Transformer block (model spec)", "transformer_block.json"),
    Example("conv_weight_grad", "Conv weight grad (nodes)", "conv_weight_grad.json"),
    Example("conv_model", "Conv model", "conv_model.json"),
)

web = Blueprint("web", __name__, template_folder="templates", static_folder="static", static_url_path="/assets")


@cache
def _digest(filename: str) -> str:
    """A short hash of a static file's bytes: its URL changes when it does (processes restart on deploy)."""
    return hashlib.sha256((STATIC / filename).read_bytes()).hexdigest()[:10]


def asset(filename: str) -> str:
    """The versioned URL of a static file (the modules a page's script imports are fetched by their plain URL,
    revalidated by ETag)."""
    return url_for("web.static", filename=filename, v=_digest(filename))


@cache
def examples() -> list[dict[str, object]]:
    """The examples that exist in this checkout or image, with their text: [{key, title, file, kind, text}]."""
    out: list[dict[str, object]] = []
    for ex in EXAMPLES:
        path = EXAMPLES_DIR / ex.file
        if path.is_file():
            kind = "json" if ex.file.endswith(".json") else "program"
            out.append({"key": ex.key, "title": ex.title, "file": ex.file, "kind": kind,
                        "featured": ex.featured, "text": path.read_text(encoding="utf-8")})
    return out


@web.app_context_processor
def _helpers() -> dict[str, object]:
    return {"asset": asset}


@web.after_request
def _headers(resp: Response) -> Response:
    resp.headers.setdefault("Content-Security-Policy", CSP)
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "same-origin")
    resp.headers.setdefault("X-Frame-Options", "DENY")
    return resp


@web.get("/")
def index() -> str:
    """The editor, the examples and the list of recent jobs."""
    return render_template("web/index.html", examples=examples())


@web.get("/jobs/<job_id>")
def job_page(job_id: str) -> tuple[str, int]:
    """One job: its progress while it runs, then its graph, nodes, parameters and verdict."""
    try:
        svc().store.get(job_id)
    except JobNotFound as e:
        return render_template("web/missing.html", message=str(e)), 404
    return render_template("web/job.html", job_id=job_id), 200
