"""A blind A/B panel: two images of the same prompt and seed, model names hidden, a vote per pair.

>>> from helpers.judge.votes import pairs_from_compare
>>> ABPanel(pairs_from_compare(comparison), "outputs/votes.jsonl")

Buttons or keys (with the mouse over the panel): 1 or ← left, 2 or → right, 3 or ↓ tie, 4 or x both bad.
Each vote is on disk (`helpers.judge.votes.append_vote`) before the next pair shows; a new panel on the same file
resumes where the last one stopped. The ranking below updates after every vote.
"""

from __future__ import annotations

import html
import io
import time
from pathlib import Path

import ipywidgets as w
from PIL import Image

from ..judge.votes import Pair, append_vote, rank, read_votes, remaining

KEYS = {"1": "left", "ArrowLeft": "left", "2": "right", "ArrowRight": "right", "3": "tie", "ArrowDown": "tie",
        "4": "both_bad", "x": "both_bad"}  # fmt: skip
WORDS = {"left": "left", "right": "right", "tie": "a tie", "both_bad": "both bad"}


def blind_png(path: Path) -> bytes:
    """The image's pixels as a PNG without its text chunks, which name the model."""
    buf = io.BytesIO()
    with Image.open(path) as image:
        image.convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


class ABPanel(w.VBox):
    """Blind pairwise votes between models, written to a JSONL log, with a running Bradley–Terry ranking.

    `min_look_s`: a vote sooner than this after a pair appeared is ignored, so a double click cannot vote on a
    pair nobody has seen. `reveal`: show the two names after each vote (off by default: names seen bias later votes).
    `show_ranking`: the running ranking under the pairs; its counts hint which model was on which side just now,
    so turn it off for a stricter blind round.
    """

    def __init__(self, pairs: list[Pair], log: str | Path = "outputs/votes.jsonl", reveal: bool = False,
                 show_ranking: bool = True, n_boot: int = 200, min_look_s: float = 0.5, width: int = 384):  # fmt: skip
        self.pairs, self.path, self.n_boot, self.min_look_s = list(pairs), Path(log), n_boot, min_look_s
        ids = {p.id for p in self.pairs}
        self.votes = [v for v in read_votes(self.path) if v["pair"] in ids]
        self.todo = remaining(self.pairs, self.votes)
        self.current: Pair | None = None
        self._shown_at = 0.0
        self._last_event = None
        self.progress = w.HTML()
        self.prompt = w.HTML()
        self.left = w.Image(format="png", width=width)
        self.right = w.Image(format="png", width=width)
        self.buttons = {
            "left": w.Button(description="◀ Left (1)", button_style="info"),
            "right": w.Button(description="Right (2) ▶", button_style="info"),
            "tie": w.Button(description="Tie (3)"),
            "both_bad": w.Button(description="Both bad (4)", button_style="warning"),
        }
        for choice, button in self.buttons.items():
            button.on_click(lambda _, c=choice: self.vote(c))
        self.reveal = w.Checkbox(description="show the names after each vote", value=reveal, indent=False)
        self.show_ranking = w.Checkbox(description="show the running ranking", value=show_ranking, indent=False)
        self.show_ranking.observe(lambda _: self._show_ranking(), "value")
        self.status = w.HTML()
        self.ranking = w.HTML()
        images = w.HBox([w.VBox([w.HTML("<b>Left</b>"), self.left]), w.VBox([w.HTML("<b>Right</b>"), self.right])])
        super().__init__([self.progress, self.prompt, images, w.HBox(list(self.buttons.values())),
                          w.HBox([self.reveal, self.show_ranking]),
                          self.status, self.ranking])  # fmt: skip
        self.key_events = self._keys()
        self._show_next()
        self._show_ranking()

    def _keys(self):
        """Key presses over the panel, through ipyevents (ipywidgets itself has no key events)."""
        try:
            from ipyevents import Event
        except ImportError:
            self.status.value = "keys need ipyevents (<code>pip install ipyevents</code>); the buttons work"
            return None
        keys = Event(source=self, watched_events=["keydown"], prevent_default_action=True)
        keys.on_dom_event(lambda event: self.press(event.get("key", ""), event.get("timeStamp")))
        return keys

    def press(self, key: str, stamp: float | None = None) -> None:
        """A key press: 1/← left, 2/→ right, 3/↓ tie, 4/x both bad; other keys do nothing.

        `stamp` is the browser's timeStamp of the key event: ipyevents can deliver one key press twice (one listener
        per time it attached to the panel), and one press must be one vote, never a vote on the next pair unseen.
        """
        if stamp is not None and stamp == self._last_event:
            return
        self._last_event = stamp
        if key in KEYS:
            self.vote(KEYS[key])

    def vote(self, choice: str) -> dict | None:
        """Record a vote on the pair shown (the buttons and keys), then show the next pair."""
        if self.current is None:
            return None
        if time.monotonic() - self._shown_at < self.min_look_s:
            self.status.value = "too fast: look at both images, then vote"
            return None
        pair = self.current
        row = append_vote(self.path, pair, choice)  # on disk before anything else changes
        self.votes.append(row)
        self.todo = [p for p in self.todo if p.id != pair.id]
        names = f": left was <b>{html.escape(pair.left)}</b>, right <b>{html.escape(pair.right)}</b>"
        self.status.value = f"saved: you voted {WORDS[choice]}" + (names if self.reveal.value else "")
        self._show_next()
        self._show_ranking()
        return row

    def _show_next(self) -> None:
        done, total = len(self.pairs) - len(self.todo), len(self.pairs)
        if not self.todo:
            self.current = None
            self.progress.value = f"<b>{done} of {total} pairs</b>: all voted, thank you"
            self.prompt.value = ""
            self.left.value = self.right.value = b""
            for button in self.buttons.values():
                button.disabled = True
            return
        self.current = pair = self.todo[0]
        self.progress.value = f"<b>{done} of {total} pairs</b> voted · votes go to {html.escape(str(self.path))}"
        self.prompt.value = f"Prompt: <i>{html.escape(pair.prompt)}</i> · seed {pair.seed}"
        self.left.value, self.right.value = blind_png(pair.left_image), blind_png(pair.right_image)
        self._shown_at = time.monotonic()

    def _show_ranking(self) -> None:
        if not self.votes or not self.show_ranking.value:
            self.ranking.value = ""
            return
        self.ranking.value = rank(self.votes, n_boot=self.n_boot)._repr_html_()
