"""The list pages' address helpers: the filters as a query string, and the sortable column headers."""

from django.http import HttpRequest

PAGE_SIZE = 50  # rows on one page of a list


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
