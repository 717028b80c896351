"""Headless Debian chromium for the e2e tests of the live view (docs/view.md): a page rendered to its DOM
(--dump-dom) or to a screenshot, and the DOM read back into elements that tests query by tag, class and
attribute."""
import html.parser
import os
import shutil
import subprocess
import tempfile

import veer_e2e as e2e


class Dom(html.parser.HTMLParser):
    """Every element of a document with its attributes and its ancestors' (enough for the queries below)."""
    VOID = {"meta", "link", "br", "img", "input", "hr", "col", "area", "base", "source", "wbr"}

    def __init__(self, text):
        super().__init__()
        self.elements, self._stack = [], []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        el = {"tag": tag, "attrs": dict(attrs), "ancestors": list(self._stack), "text": []}
        self.elements.append(el)
        if tag not in self.VOID:
            self._stack.append(el)

    def handle_startendtag(self, tag, attrs):  # <path .../> in SVG
        self.elements.append({"tag": tag, "attrs": dict(attrs), "ancestors": list(self._stack), "text": []})

    def handle_endtag(self, tag):
        for i in range(len(self._stack) - 1, -1, -1):
            if self._stack[i]["tag"] == tag:
                del self._stack[i:]
                break

    def handle_data(self, data):
        for el in self._stack:
            el["text"].append(data)

    @staticmethod
    def has_class(el, cls):
        return cls in el["attrs"].get("class", "").split()

    def find(self, tag=None, cls=(), within=None, **attrs):
        """Elements of TAG with every class of CLS and the ATTRS (data_x -> data-x), inside an element that
        WITHIN(element) accepts."""
        cls = (cls,) if isinstance(cls, str) else cls
        want = {k.replace("_", "-"): v for k, v in attrs.items()}
        out = []
        for el in self.elements:
            if tag and el["tag"] != tag:
                continue
            if not all(self.has_class(el, c) for c in cls):
                continue
            if any(el["attrs"].get(k) != v for k, v in want.items()):
                continue
            if within and not any(within(a) for a in el["ancestors"]):
                continue
            out.append(el)
        return out


def render(test, url, *, netns=None, screenshot=None, budget_ms=4000):
    """URL in headless chromium with a fresh profile: its rendered DOM (a Dom), or, with SCREENSHOT, a PNG
    there (None returned). Inside the network namespace NETNS, or with NETNS None in a namespace of its own
    that has no network at all (`unshare --net`: a file:// page that tried to fetch anything would fail).
    --virtual-time-budget lets the page's timers run BUDGET_MS of virtual time, waiting for its fetches."""
    profile = tempfile.mkdtemp(prefix="veer-e2e-chromium-")
    test.addCleanup(shutil.rmtree, profile, True)
    args = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}"]
    if screenshot:
        args += [f"--screenshot={screenshot}", "--window-size=1280,1150", "--hide-scrollbars"]
    else:
        args += ["--dump-dom"]
    wrap = ["ip", "netns", "exec", netns] if netns else ["unshare", "--net"]
    proc = subprocess.run(wrap + args + [url], capture_output=True, text=True, timeout=e2e.scaled(90))
    if proc.returncode != 0:
        test.fail(f"chromium {url} -> {proc.returncode}: {proc.stderr[-2000:]}")
    if screenshot:
        test.assertTrue(os.path.getsize(screenshot) > 10_000, f"{screenshot}: empty screenshot")
        return None
    return Dom(proc.stdout)
