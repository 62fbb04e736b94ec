"""The one definition of "the article's text": what is embedded, trained on and served for an article.

An article is its title, optionally followed by the first words of its lead (the paragraphs before the first
section heading). Every model version records the recipe it was trained with (``ArticleTextRecipe.name``) and
is always embedded and served with that same recipe, so an old version keeps serving correctly after the
default changes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NAME = re.compile(r"^title(?:\+lead(\d+))?$")


@dataclass(frozen=True)
class ArticleTextRecipe:
    """Title, then at most ``lead_words`` words of the lead (0: the title alone)."""

    lead_words: int = 0

    def __post_init__(self) -> None:
        if self.lead_words < 0:
            raise ValueError(f"lead_words must be 0 or more, got {self.lead_words}")

    @property
    def name(self) -> str:
        """Stable, human-readable name stored with each model version: ``title`` or ``title+lead80``."""
        return f"title+lead{self.lead_words}" if self.lead_words else "title"

    @property
    def reads_lead(self) -> bool:
        """Whether the text changes when the lead does (so a lead edit makes the article's embedding stale)."""
        return self.lead_words > 0

    @classmethod
    def from_name(cls, name: str) -> ArticleTextRecipe:
        match = _NAME.match(name.strip())
        if not match:
            raise ValueError(f"unknown article text recipe {name!r}: use 'title' or 'title+leadN' (N words)")
        return cls(lead_words=int(match.group(1) or 0))

    def compose(self, title: str, lead: str | None) -> str:
        """The text of one article under this recipe."""
        if not self.lead_words or not lead:
            return title
        words = lead.split()
        if not words:
            return title
        return f"{title}. {' '.join(words[: self.lead_words])}"


TITLE_ONLY = ArticleTextRecipe(0)
"""What every version trained before leads were stored was trained and is served with."""

DEFAULT_RECIPE = ArticleTextRecipe(160)
"""The article text of new versions. Chosen by ``bench/lead_bench.py`` (base model, no training, the evaluation
articles of the shared bulk split; docs/article-text.md): the shortest budget measured that gains both 0.04
NDCG@10 and 0.04 ref -> article acc@1 over the title alone (+0.060 and +0.050; the whole lead, which is what 256
words amount to under the model's 256-token window, +0.059 and +0.051); 40-80 words gain as much NDCG@10 but at
most +0.036 acc@1."""
