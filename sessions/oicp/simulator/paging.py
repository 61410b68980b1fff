"""HBS's paged answers (Spring's Page shape) and their ?page=&size= query, shared by the paged pulls.

eRoamingGetChargeDetailRecords and eRoamingPullEvseData answer the same way: `content`, then
`pageable`, `last`, `totalPages`, `totalElements`, `first`, `size`, `number`, `numberOfElements`,
`sort`, `empty` and HBS's StatusCode. A `sort` query parameter is accepted and the order kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sessions.oicp.status_codes import HUBJECT_DESCRIPTIONS


def page_query(query: Mapping[str, list[str]], default_size: int, max_size: int) -> tuple[list[str], int, int]:
    """(violations, page, size) of the query string; page from 0, size from 1 to `max_size`."""
    problems: list[str] = []
    page, size = 0, default_size
    for name, low, high in (("page", 0, None), ("size", 1, max_size)):
        values = query.get(name)
        if not values:
            continue
        try:
            number = int(values[-1])
        except ValueError:
            problems.append(f"{name}: {values[-1]!r} is not an integer")
            continue
        if number < low or (high is not None and number > high):
            limit = f"between {low} and {high}" if high is not None else f"at least {low}"
            problems.append(f"{name}: {number} must be {limit}")
        elif name == "page":
            page = number
        else:
            size = number
    return problems, page, size


def page_answer(content: Sequence[Any], page: int, size: int, total: int) -> dict[str, Any]:
    """One page of `total` elements, `content` being this page's."""
    total_pages = (total + size - 1) // size
    sort = {"sorted": False, "empty": True, "unsorted": True}
    return {
        "content": list(content),
        "pageable": {
            "sort": sort,
            "pageSize": size,
            "pageNumber": page,
            "offset": page * size,
            "paged": True,
            "unpaged": False,
        },
        "last": page >= total_pages - 1,
        "totalPages": total_pages,
        "totalElements": total,
        "first": page == 0,
        "size": size,
        "number": page,
        "numberOfElements": len(content),
        "sort": dict(sort),
        "empty": not content,
        # No "AdditionalInfo": null here: the OpenAPI's StatusCode does not allow it to be null.
        "StatusCode": {"Code": "000", "Description": HUBJECT_DESCRIPTIONS.get("000")},
    }
