"""The list pages' helpers: a paginator that counts no further than it needs, the filters as a query
string, and the sortable column headers."""

from functools import cached_property

from django.core.paginator import Paginator
from django.http import HttpRequest

PAGE_SIZE = 50  # rows on one page of a list
COUNT_LIMIT = 10_000  # rows a list counts exactly; beyond, it says "more than"


class BoundedPaginator(Paginator):
    """A Paginator over a queryset that counts its rows only up to `limit` (COUNT_LIMIT, or further
    when the page asked for lies further): COUNT(*) over a whole large table cost more than reading
    the page (the stop history's 300,000 requests: bench/RESULTS.md). Up to the limit every figure is
    exact; past it `capped` is true, `count` is limit + 1 (so the last counted page has a next
    one) and the page says "more than". One COUNT query either way, whatever the table's size.
    """

    def __init__(self, object_list, per_page, *, limit: int | None = None, **kwargs):
        super().__init__(object_list, per_page, **kwargs)
        self.limit = COUNT_LIMIT if limit is None else limit

    def get_page(self, number):
        try:
            wanted = int(number)
        except (TypeError, ValueError):
            wanted = 1  # Paginator.get_page shows the first page for it
        if wanted < 1:
            # Paginator.get_page would show the last page, which a capped count does not know: the first.
            number = wanted = 1
        self.limit = max(self.limit, wanted * self.per_page)  # a page past the limit still exists
        return super().get_page(number)

    @cached_property
    def count(self) -> int:
        # The first limit + 1 rows in any order: their number is the same.
        return self.object_list.order_by()[: self.limit + 1].count()

    @property
    def capped(self) -> bool:
        return self.count > self.limit

    @property
    def known_pages(self) -> int:
        """The full pages within the limit ("page 1 of more than 200")."""
        return self.limit // self.per_page


def querystring(request: HttpRequest, *drop: str) -> str:
    """The page's GET parameters without `drop` (such as "page"), URL-encoded."""
    params = request.GET.copy()
    for name in drop:
        params.pop(name, None)
    return params.urlencode()


def sort_links(
    request: HttpRequest, current: str, keys, *, default: str, first: dict[str, str] | None = None
) -> dict[str, dict[str, str]]:
    """Each sortable column's header link (the filters kept, the page dropped) and its aria-sort.

    A click on the sorted column reverses it; on another, sorts by it in its natural first direction
    (`first`: "-" for newest or largest first)."""
    current = current if current.lstrip("-") in keys else default
    base = querystring(request, "page", "sort")
    links = {}
    for key in keys:
        if current.lstrip("-") == key:
            target = key if current.startswith("-") else f"-{key}"
            aria = "descending" if current.startswith("-") else "ascending"
        else:
            target, aria = f"{(first or {}).get(key, '')}{key}", "none"
        links[key] = {"url": f"?{base + '&' if base else ''}sort={target}", "aria": aria}
    return links
