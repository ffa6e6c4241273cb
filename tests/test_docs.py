"""The documentation builds strictly, works offline, and lists every public name.

The site is built once into a temporary folder (``mkdocs build --strict``). The browser test
opens the API pages in headless Chromium with the network cut off and reads what a reader
sees (``innerText``, so collapsed source listings do not count): formulas must be MathML drawn
by the browser, with no raw TeX left, and nothing may overflow a phone-width (400 px) screen.
It is skipped, with the reason, where Chromium or the docs extras are not installed;
``.ci/run`` installs both.
"""

from __future__ import annotations

import html
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
RAW_TEX = (r"\frac", r"\sum", r"\log", r"\exp", r"\(", r"\[", "$$", r"\mathcal", r"\tau")
PHONE_WIDTH = 400

needs_docs_extras = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("latex2mathml") is None,
    reason='docs extras not installed (pip install -e ".[docs]")',
)


def chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("latex2mathml") is None:
        pytest.skip('docs extras not installed (pip install -e ".[docs]")')
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def api_pages(site: Path) -> list[Path]:
    pages = sorted(p for p in (site / "api").glob("*.html") if p.name != "index.html")
    assert pages, "no API pages were built"
    return pages


# ---------------------------------------------------------------- the hook on its own


@needs_docs_extras
def test_hook_turns_arithmatex_and_math_roles_into_mathml():
    sys.path.insert(0, str(DOCS / "hooks"))
    try:
        import mathml
    finally:
        sys.path.pop(0)
    page = (
        r'<p><span class="arithmatex">\(\frac{a}{b} &lt; 1\)</span> and '
        r":math:<code>(b, d)</code></p>"
        r'<div class="arithmatex">\[\sum_{u} \ell_u\]</div>'
    )
    out = mathml.render_math(page)
    assert "arithmatex" not in out and ":math:" not in out
    assert out.count("<math") == 3
    assert 'display="block"' in out and "<mfrac>" in out and "< 1" not in out
    assert "\\frac" not in out and "\\sum" not in out


@needs_docs_extras
def test_hook_links_restructuredtext_roles():
    sys.path.insert(0, str(DOCS / "hooks"))
    try:
        import rst_roles
    finally:
        sys.path.pop(0)
    out = rst_roles.link_roles(
        ":func:<code>~s4rec_components.contrastive.intent_info_nce</code>, "
        ":class:<code>SASRecEncoder</code>, :class:<code>torch.Tensor</code>"
    )
    assert ":func:" not in out and ":class:" not in out
    assert 'identifier="s4rec_components.contrastive.intent_info_nce"><code>intent_info_nce</code>' in out
    assert 'identifier="s4rec_components.encoder.SASRecEncoder"' in out
    assert "<code>torch.Tensor</code>" in out and out.count("<autoref") == 2


def test_api_pages_show_no_restructuredtext_roles(site: Path):
    for page in api_pages(site):
        prose = re.sub(r"<(pre|code|details)\b.*?</\1>", "", page.read_text(encoding="utf-8"), flags=re.S)
        roles = re.findall(r":(?:func|class|meth|attr|mod|math):", prose)
        assert not roles, f"{page.relative_to(site)} shows raw roles {roles}"


# ---------------------------------------------------------------- the built site


def test_site_builds_strictly_and_loads_nothing_from_the_network(site: Path):
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        scripts = re.findall(r"<script[^>]*\ssrc=\"([^\"]+)\"", text)
        remote = [s for s in scripts if re.match(r"(https?:)?//", s)]
        assert not remote, f"{page.relative_to(site)} loads scripts from the network: {remote}"
        links = re.findall(r"<link[^>]*>", text)
        remote_links = [
            link for link in links
            if re.search(r"rel=\"(stylesheet|preconnect|preload|icon)\"", link)
            and re.search(r"href=\"(https?:)?//", link)
        ]
        assert not remote_links, f"{page.relative_to(site)} loads from the network: {remote_links}"
        assert not [s for s in scripts if "mathjax" in s.lower()], page
        assert not re.search(r"<script[^>]*>[^<]*MathJax", text), page


# What Markdown looks like when a page shows it as text: a table rule, bold, a link, a reference.
RAW_MARKDOWN = re.compile(r"\|---|(?<!\d)\*\*(?!\d)|\]\(|\]\[")


def test_no_page_shows_raw_markdown(site: Path):
    """Every page's prose is rendered: Markdown inside an HTML block (the reproduction page's
    collapsed run lists and tables, ``<details markdown="1">``) once reached readers as its source
    text, which ``--strict`` does not catch. Code and formulas are left out (``2**63`` is text)."""
    shown = {}
    for page in site.rglob("*.html"):
        article = re.search(r"<article\b.*?</article>", page.read_text(encoding="utf-8"), flags=re.S)
        if article is None:
            continue
        prose = re.sub(r"<(pre|code|script|style|math)\b.*?</\1>", "", article.group(0), flags=re.S)
        text = html.unescape(re.sub(r"<[^>]+>", "", prose))
        hits = [text[max(m.start() - 40, 0):m.end() + 40] for m in RAW_MARKDOWN.finditer(text)]
        if hits:
            shown[page.relative_to(site).as_posix()] = hits[:3]
    assert not shown, f"pages that show Markdown source: {shown}"
    assert "<details" in (site / "reproduction.html").read_text(encoding="utf-8")


def test_every_link_of_the_site_opens_a_file_from_the_disk(site: Path):
    """Opened as files (``file://``, no server), every relative link and asset of every page
    lands on a file: ``page.html`` links, never ``page/`` (a folder's listing in a browser)."""
    from urllib.parse import unquote, urlsplit

    broken = {}
    for page in site.rglob("*.html"):
        if page.name == "404.html":  # served by a web server only, with root-relative links
            continue
        for url in re.findall(r'(?:href|src)="([^"]*)"', page.read_text(encoding="utf-8")):
            parts = urlsplit(html.unescape(url))
            if parts.scheme or parts.netloc or not parts.path:
                continue
            if not (page.parent / unquote(parts.path)).is_file():
                broken.setdefault(page.relative_to(site).as_posix(), []).append(url)
    assert not broken, f"links that open no file: {broken}"
    assert (site / "getting-started.html").is_file() and (site / "api" / "encoder.html").is_file()


def test_api_pages_have_mathml_and_no_raw_tex_in_the_html(site: Path):
    total = 0
    for page in api_pages(site):
        text = page.read_text(encoding="utf-8")
        total += text.count("<math")
        assert 'class="arithmatex"' not in text, page
        # Outside code listings (the collapsed source shows docstrings verbatim), no TeX remains.
        prose = re.sub(r"<(pre|code|details)\b.*?</\1>", "", text, flags=re.S)
        leftovers = [t for t in RAW_TEX if t in html.unescape(re.sub(r"<math\b.*?</math>", "", prose, flags=re.S))]
        assert not leftovers, f"{page.relative_to(site)} shows raw TeX {leftovers}"
    assert total > 50


def test_every_public_name_is_on_the_api_index(site: Path):
    import s4rec_components

    index = (site / "api" / "index.html").read_text(encoding="utf-8")
    missing = [name for name in s4rec_components.__all__ if f">{name}<" not in index and name != "__version__"]
    assert not missing, f"API index lacks {missing}"
    # Each entry links to the page of the module that defines it.
    for name in s4rec_components.__all__:
        if name == "__version__":
            continue
        assert re.search(rf'href="[^"]+#s4rec_components\.[\w.]*{re.escape(name)}"', index), name


def test_every_exporting_module_has_an_api_page():
    import s4rec_components

    modules = {module.split(".")[0].lstrip("_") for module in s4rec_components._EXPORTS.values()}
    pages = {p.stem for p in (DOCS / "api").glob("*.md")}
    assert modules <= pages, f"modules without an API page: {sorted(modules - pages)}"


def test_every_page_is_in_the_navigation():
    yaml = pytest.importorskip("yaml")

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda *args: None)
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=Loader)

    def entries(node):
        if isinstance(node, str):
            yield node
        elif isinstance(node, list):
            for item in node:
                yield from entries(item)
        elif isinstance(node, dict):
            for value in node.values():
                yield from entries(value)

    in_nav = set(entries(config["nav"]))
    excluded = [line.strip() for line in config.get("exclude_docs", "").splitlines() if line.strip()]
    pages = {
        path for path in (p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
        if not any(path.startswith(pattern) for pattern in excluded)
    }
    assert pages <= in_nav, f"pages missing from nav: {sorted(pages - in_nav)}"


def test_version_is_shown(site: Path):
    import s4rec_components

    home = (site / "index.html").read_text(encoding="utf-8")
    assert f"s4rec-components {s4rec_components.__version__}" in home
    assert "{{ version }}" not in home


# ---------------------------------------------------------------- in a browser, offline

HARNESS = """<!doctype html><html><body><pre id="result">pending</pre>
<iframe id="f" style="width:%(width)dpx;height:900px"></iframe>
<script>
const pages = %(pages)s;
const results = [];
const frame = document.getElementById('f');
function next() {
  if (results.length === pages.length) {
    document.getElementById('result').textContent = JSON.stringify(results);
    return;
  }
  frame.src = pages[results.length];
}
frame.addEventListener('load', () => {
  const d = frame.contentDocument;
  const maths = [...d.querySelectorAll('math')];
  results.push({
    page: pages[results.length],
    maths: maths.length,
    displays: [...new Set(maths.map(m => getComputedStyle(m).display))],
    empty: maths.filter(m => m.offsetParent !== null && m.getBoundingClientRect().width === 0).length,
    scrollWidth: d.documentElement.scrollWidth,
    clientWidth: d.documentElement.clientWidth,
    text: d.body.innerText,
  });
  next();
});
next();
</script></body></html>
"""


def browse(site: Path, pages: list[str], tmp_path: Path) -> list[dict]:
    browser = chromium()
    if browser is None:
        pytest.skip("Chromium is not installed (apt-get install chromium; .ci/run does it)")
    harness = site / "harness.html"
    harness.write_text(HARNESS % {"width": PHONE_WIDTH, "pages": json.dumps(pages)}, encoding="utf-8")

    def command(profile: Path) -> list[str]:
        return [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
            f"--user-data-dir={profile}",
            # The network is off: no name resolves, and every proxied request goes nowhere.
            "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
            "--allow-file-access-from-files", "--virtual-time-budget=30000", "--dump-dom",
            harness.as_uri(),
        ]

    # A cold headless Chromium hung once here for a whole 300 s timeout (and then passed in 4 s
    # three times in a row): give each try 150 s, and try twice with a fresh profile.
    for attempt in range(2):
        try:
            done = subprocess.run(command(tmp_path / f"profile{attempt}"), capture_output=True, text=True,
                                  timeout=150)
            break
        except subprocess.TimeoutExpired:
            if attempt == 1:
                raise
    match = re.search(r'<pre id="result">(.*?)</pre>', done.stdout, re.S)
    assert match and match.group(1) != "pending", done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads(html.unescape(match.group(1)))


def test_formulas_render_offline_in_chromium_at_phone_width(site: Path, tmp_path: Path):
    pages = [p.relative_to(site).as_posix() for p in api_pages(site)]
    pages += sorted(p.name for p in site.glob("*.html") if p.name not in ("index.html", "404.html"))
    pages.append("index.html")
    results = browse(site, pages, tmp_path)
    assert len(results) == len(pages)
    with_math = 0
    for result in results:
        page, text = result["page"], result["text"]
        shown = [t for t in RAW_TEX if t in text]
        assert not shown, f"{page}: raw TeX visible to the reader: {shown}"
        assert result["empty"] == 0, f"{page}: {result['empty']} formulas drawn with zero width"
        if result["maths"]:
            with_math += 1
            # "math" / "block math" are MathML Core's display types: the browser draws them itself.
            assert set(result["displays"]) <= {"math", "block math", "inline math"}, (page, result["displays"])
        assert result["scrollWidth"] <= result["clientWidth"] + 1, (
            f"{page} overflows a {PHONE_WIDTH}px screen: {result['scrollWidth']} > {result['clientWidth']}"
        )
    assert with_math >= len(api_pages(site)) // 2, "most API pages should have formulas"


# ---------------------------------------------------------------- the tutorial's script

TUTORIAL = ROOT / "examples" / "gru4rec" / "train.py"


def load_tutorial():
    spec = importlib.util.spec_from_file_location("gru4rec_train", TUTORIAL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("flags", [["--pieces"], ["--no-pieces"], ["--encoder", "transformer"]])
def test_tutorial_script_prints_one_json_line_of_metrics_last(flags, capsys):
    import s4rec_components

    tutorial = load_tutorial()
    try:
        assert tutorial.main(["--epochs", "1", "--num-users", "200", "--threads", "1", *flags]) == 0
    finally:
        s4rec_components.set_validate_args(True)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    metrics = json.loads(last)
    assert list(metrics) == ["HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20"]
    assert metrics["HR@5"] <= metrics["HR@10"] <= metrics["HR@20"]
    assert all(metrics[f"NDCG@{k}"] <= metrics[f"HR@{k}"] for k in (5, 10, 20))


def test_tutorial_checks_values_on_the_first_step_and_at_evaluation_only(monkeypatch, capsys):
    """What the tutorial's step section says: the library's value checks run on the run's first
    step, are off for every later training step (every epoch, not only the first) and on for
    each evaluation; the caller gets them back on."""
    import s4rec_components

    tutorial = load_tutorial()
    seen: list[tuple[str, bool]] = []
    loss, evaluate = tutorial.next_item_loss, tutorial.evaluate

    def recording_loss(*args, **kwargs):
        seen.append(("step", s4rec_components.validate_args_enabled()))
        return loss(*args, **kwargs)

    def recording_evaluate(*args, **kwargs):
        seen.append(("eval", s4rec_components.validate_args_enabled()))
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(tutorial, "next_item_loss", recording_loss)
    monkeypatch.setattr(tutorial, "evaluate", recording_evaluate)
    try:
        assert tutorial.main(["--epochs", "3", "--num-users", "300", "--batch-size", "64", "--patience", "5",
                              "--no-pieces", "--hidden-size", "8", "--threads", "1"]) == 0
        assert s4rec_components.validate_args_enabled()
    finally:
        s4rec_components.set_validate_args(True)
    capsys.readouterr()
    steps = [on for kind, on in seen if kind == "step"]
    evals = [on for kind, on in seen if kind == "eval"]
    assert len(steps) >= 9 and steps[0] and not any(steps[1:])
    assert len(evals) == 4 and all(evals)  # 3 validations and the test


def test_tutorial_puts_the_check_switch_back_when_a_step_fails(monkeypatch):
    """The switch is global: a step that raises after the first one turned the checks off must
    not leave them off for the rest of the process."""
    import s4rec_components

    tutorial = load_tutorial()
    calls = {"n": 0}
    loss = tutorial.next_item_loss

    def failing_loss(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            assert not s4rec_components.validate_args_enabled()  # off after the first step
            raise RuntimeError("a step failed")
        return loss(*args, **kwargs)

    monkeypatch.setattr(tutorial, "next_item_loss", failing_loss)
    args = tutorial.parser().parse_args(["--epochs", "1", "--num-users", "300", "--batch-size", "64",
                                         "--no-pieces", "--hidden-size", "8", "--threads", "1"])
    try:
        with pytest.raises(RuntimeError, match="a step failed"):
            tutorial.train(args)
        assert s4rec_components.validate_args_enabled()
    finally:
        s4rec_components.set_validate_args(True)


def test_tutorial_transformer_gives_the_same_states_to_a_batch_cut_to_its_longest_row():
    """Training cuts a batch to its longest row, evaluation does not: with positions counted
    from the right (and padding keys masked) the real positions' states are the same."""
    tutorial = load_tutorial()
    torch.manual_seed(0)
    model = tutorial.OwnTransformer(30, hidden_size=16, num_layers=2, max_len=12).eval()
    ids = torch.tensor([[0, 0, 0, 0, 0, 0, 0, 3, 9, 4, 1, 7], [0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 2, 8]])
    with torch.no_grad():
        full, cut = model(ids), model(ids[:, -5:])
    real = ids[:, -5:] != 0
    torch.testing.assert_close(full[:, -5:][real], cut[real])


def test_tutorial_time_budget_stops_after_the_epoch_that_spends_it(tmp_path, capsys):
    tutorial = load_tutorial()
    out = tmp_path / "run.json"
    assert tutorial.main(["--epochs", "3", "--max-minutes", "0", "--num-users", "150", "--no-pieces",
                          "--hidden-size", "8", "--output", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["stopped_by"] == "time_budget" and record["epochs_run"] == 1
    assert record["best_epoch"] == 0 and record["config"]["max_minutes"] == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {
        k: round(record["test"][k], 6) for k in record["test"]}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--data", "{tmp}/missing.txt"], "No such file"),
        (["--data", "{tmp}"], "directory"),
        (["--data", "{tmp}/bad.txt"], "line 2"),
        (["--epochs", "0"], "--epochs must be >= 1"),
        (["--max-minutes", "nan"], "--max-minutes"),
        (["--lr", "nan"], "--lr must be a finite number > 0"),
        (["--weight", "-1"], "--weight must be a finite number >= 0"),
        (["--weight", "inf"], "--weight must be a finite number >= 0"),
        (["--device", "tpu"], "not a torch device"),
        (["--device", "cuda:99"], "CUDA device(s)"),
        (["--output", "{tmp}"], "is a folder"),
        (["--data", "{tmp}/three.txt"], "needs at least 4 items"),
    ],
)
def test_tutorial_bad_input_exits_2_with_one_line(argv, message, tmp_path, capsys):
    (tmp_path / "bad.txt").write_text("1 1 2 3\n2 5 x 7\n")
    (tmp_path / "three.txt").write_text("1 1 2 3\n2 2 3 4\n")
    tutorial = load_tutorial()
    with pytest.raises(SystemExit) as exit_info:
        tutorial.main([a.format(tmp=tmp_path) for a in argv] + ["--threads", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1
    assert err[0].startswith("train.py: error:") and message in err[0]


def test_tutorial_pieces_train_the_prototypes_and_never_predict_padding_or_mask():
    import torch

    tutorial = load_tutorial()
    torch.manual_seed(0)
    n = 30
    model, pieces = tutorial.GRU4Rec(n, hidden_size=16), tutorial.Pieces(n, 16, num_prototypes=4)
    optimizer = torch.optim.Adam([*model.parameters(), *pieces.parameters()], lr=0.1)
    items = torch.randint(1, n + 1, (8, 6))
    items[:4, :2] = 0                                            # left padding
    before = pieces.clusters.prototypes.detach().clone()
    loss = pieces.loss(model, items, model(items), torch.Generator().manual_seed(0))
    loss.backward()
    optimizer.step()
    assert not torch.equal(before, pieces.clusters.prototypes.detach())
    assert model.item_embeddings.num_embeddings == n + 2       # padding, items, mask token
    targets = torch.randint(1, n + 1, (8, 6))
    rows, cols = targets.nonzero(as_tuple=True)
    hidden = model(items).detach().requires_grad_()
    fused = tutorial.next_item_loss(model, hidden, rows, cols, targets[rows, cols], (0, n + 1))
    (fused_grad,) = torch.autograd.grad(fused, hidden)
    # the plain full softmax it stands for: padding (0) and the mask token (n + 1) never predicted
    logits = model.score(hidden[rows, cols]).index_fill(1, torch.tensor([0, n + 1]), -torch.inf)
    plain = torch.nn.functional.cross_entropy(logits, targets[rows, cols])
    (plain_grad,) = torch.autograd.grad(plain, hidden)
    torch.testing.assert_close(fused, plain)
    torch.testing.assert_close(fused_grad, plain_grad)


@needs_docs_extras
def test_tutorial_table_shows_only_finished_runs(tmp_path: Path):
    sys.path.insert(0, str(DOCS / "hooks"))
    try:
        import tutorial_results
    finally:
        sys.path.pop(0)
    assert "Not yet measured" in tutorial_results.results_table(tmp_path)
    metrics = dict.fromkeys(tutorial_results.KEYS, 0.0)
    for seed, ndcg in ((0, 0.25), (1, 0.35)):
        record = {
            "config": {"data": "x/Beauty.txt", "encoder": "gru", "pieces": True, "seed": seed,
                       "epochs": 300},
            "test": {**metrics, "NDCG@20": ndcg}, "best_epoch": 3, "epochs_run": 14,
        }
        (tmp_path / f"beauty-gru-pieces-s{seed}.json").write_text(json.dumps(record))
    table = tutorial_results.results_table(tmp_path)
    assert "Not yet measured" not in table
    assert table.count("| Beauty: GRU4Rec + pieces, at most 300 epochs |") == 3   # 2 runs, mean
    assert "0.3000 ± 0.0707" in table and "3 / 14" in table


def test_design_notes_layout_table_matches_the_imports():
    """The 'imports from the package' column of the design notes is what the code imports."""
    package = ROOT / "s4rec_components"
    modules = {p.stem for p in package.glob("*.py") if p.stem != "__init__"} | {"data"}
    ignored = {"constants", "_validation"}

    def imports(paths: list[Path]) -> set[str]:
        found: set[str] = set()
        for path in paths:
            for match in re.finditer(r"^\s*from \.+([a-z_]+)?[\w.]* import", path.read_text(), re.M):
                name = match.group(1)
                if name in modules:
                    found.add(name)
        return found

    rows = re.findall(r"^\| `([\w/]+)` \| .*? \| ([^|]*) \|$", (DOCS / "design.md").read_text(), re.M)
    assert len(rows) >= 15, rows
    for module, documented in rows:
        if module == "data/":
            actual = imports(sorted((package / "data").glob("*.py"))) - {"dataset", "readers", "public", "synthetic"}
        else:
            actual = imports([package / f"{module}.py"]) - {module}
        documented = documented.replace("torch.distributed", "")
        listed = {word for word in re.findall(r"[a-z_]+", documented) if word in modules}
        assert actual - ignored == listed - ignored, (module, sorted(actual), documented)
