"""The query language and how a query becomes one vector; below the store, above the models.

:func:`parse_query` reads a query string, :func:`parse_query_tokens` command-line tokens;
:func:`query_vectors` embeds parsed queries given a model and the vectors of the items
they name. Nothing here opens a collection.
"""

from .compose import QueryEncoder, QueryLike, QueryOptions, TextCache, as_query, query_vectors
from .parse import Query, Term, TermKind, parse_query, parse_query_tokens
from .url import UrlPolicy, fetch_url, url_host

__all__ = ["Query", "Term", "TermKind", "QueryLike", "QueryOptions", "QueryEncoder", "TextCache", "UrlPolicy",
           "parse_query", "parse_query_tokens", "as_query", "query_vectors", "fetch_url", "url_host"]
