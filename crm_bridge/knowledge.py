"""What the center knows about what it sells: products (read back to callers by the code they type) and the
knowledge base agents search.

Both are reads of caller or agent text against reference tables that change rarely, and neither touches a
customer: they sit apart from the customers and the service records. A search binds its words as parameters; on
SQLite the words long enough for the trigram index go through the FTS5 table, on PostgreSQL every word through
the trigram index of the document expression.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import datetime

from sqlalchemy import Select, case, literal_column, select, table, text
from sqlalchemy.sql.elements import ColumnElement

from callcenter.db import Database, utcnow
from crm_bridge.infos import KbArticleInfo, ProductInfo, article_info, product_info
from crm_bridge.models import KB_DOCUMENT_SQL, KB_FTS_TABLE, KbArticle, Product
from crm_bridge.text import fts_phrase, like_escape, search_words

# What a caller can type as a product code (the flows' input step allows digits and the star).
PRODUCT_CODE = re.compile(r"[0-9*#]{1,32}")
# The trigram index only helps words of at least three characters; shorter ones are matched by a scan.
TRIGRAM = 3


class Knowledge:
    def __init__(self, database: Database, *, clock: Callable[[], datetime] = utcnow) -> None:
        self._database = database
        self._clock = clock

    async def product(self, code: str) -> ProductInfo | None:
        """The product a caller typed the code of; None for an unknown code or anything that is not one."""
        if not isinstance(code, str) or PRODUCT_CODE.fullmatch(code) is None:
            return None
        async with self._database.session() as session:
            row = await session.scalar(select(Product).where(Product.code == code))
            return None if row is None else product_info(row)

    async def add_article(self, title: str, body: str, tags: Iterable[str] = ()) -> KbArticleInfo:
        now = self._clock()
        async with self._database.session() as session:
            article = KbArticle(title=title, body=body, tags=" ".join(tags), created_at=now, updated_at=now)
            session.add(article)
            await session.flush()
            return article_info(article)

    async def search(self, query: str, *, limit: int = 20) -> list[KbArticleInfo]:
        """Articles holding every word of ``query`` (case-insensitive substrings of title, body or tags), articles
        whose title holds the first word first, then the most recently updated."""
        words = search_words(query)
        if not words:
            return []
        # Parenthesised: the same expression as the PostgreSQL index, which must be repeated exactly to be used.
        document: ColumnElement[str] = literal_column(f"({KB_DOCUMENT_SQL})")
        conditions: list[ColumnElement[bool]] = []
        scanned = words
        if self._database.dialect == "sqlite":
            indexed = [word for word in words if len(word) >= TRIGRAM]
            scanned = [word for word in words if len(word) < TRIGRAM]
            if indexed:
                fts = table(KB_FTS_TABLE, literal_column("rowid"))
                matches: Select[tuple[int]] = (
                    select(literal_column("rowid"))
                    .select_from(fts)
                    .where(
                        text(f"{KB_FTS_TABLE} MATCH :fts_query").bindparams(
                            fts_query=" AND ".join(map(fts_phrase, indexed))
                        )
                    )
                )
                conditions.append(KbArticle.id.in_(matches))
        conditions.extend(document.ilike(f"%{like_escape(word)}%", escape="\\") for word in scanned)
        first = KbArticle.title.ilike(f"%{like_escape(words[0])}%", escape="\\")
        async with self._database.session() as session:
            rows = await session.scalars(
                select(KbArticle)
                .where(*conditions)
                .order_by(case((first, 0), else_=1), KbArticle.updated_at.desc(), KbArticle.id.desc())
                .limit(max(1, min(limit, 50)))
            )
            return [article_info(row) for row in rows]
