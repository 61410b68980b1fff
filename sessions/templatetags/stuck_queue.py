"""The stuck queue's rows (sessions/_stuck_rows.html): `{% stuck_rows rows actions %}`.

Why a tag and not a template loop: a page has up to 100 rows of ~30 values each; printed by the
template language (a context lookup, a getattr and an escape per value, an if per optional part)
they took ~10 ms of the request, formatted here ~2 ms (bench/NOTES.md, "Pages at full size
again"). The markup is the one the page always had; every value is escaped.
`rows`: stops.presenters.stuck_rows (plain values), `actions`: its RowActions.
"""

from html import escape

from django import template
from django.template.defaulttags import CsrfTokenNode
from django.utils.safestring import mark_safe

from .directory import hotline
from .portal import session_id, stop_badge

register = template.Library()

_ROW = """
<tr id="{dom_id}"{poll}>
  <td data-label="{since_label}"><strong><time datetime="{iso}" title="{since}">{age}</time></strong></td>
  <td data-label="Why" class="why"><strong>{reason}</strong>
    {resent}
    <small class="muted">{next_step}</small></td>
  <td data-label="SessionID">{session_id}</td>
  <td data-label="EvseID"><a class="mono nowrap" href="{detail_url}">{evse_id}</a></td>
  <td data-label="CPO" class="cpo-cell"><span class="mono">{operator_id}</span>{cpo_name}{hotline}</td>
  {last_column}
  <td data-label="Actions" class="actions">{resend}{close}</td>
</tr>
"""
# While a re-sent stop is on its way, its row fetches itself again (stops.views.resend_stop, ?row=1).
_POLL = ' hx-get="{}?row=1" hx-trigger="every 2s" hx-swap="outerHTML"'
_RESENT = '<span class="resent tone-{}"><span class="tone-mark" aria-hidden="true">{}</span> {}</span>'  # "Re-sent as #12, now: …"
_RESEND = """
<button type="button" class="danger small" hx-get="{}"
        hx-target="#stop-dialog" hx-swap="innerHTML" aria-haspopup="dialog">Send stop again…</button>
"""
# "Close by hand" only closes the portal's record; the reason is required (and not a remote stop).
_CLOSE = """
<details class="close-by-hand">
  <summary>Close by hand…</summary>
  <form method="post" action="{}">{}
    <label for="{}">Reason (required; not a remote stop)</label>
    <textarea id="{}" name="reason" rows="2" required minlength="5" maxlength="1000"></textarea>
    <button type="submit">Close the record</button>
  </form>
</details>
"""


@register.simple_tag(takes_context=True)
def stuck_rows(context, rows, actions):
    csrf_input = CsrfTokenNode().render(context)  # what {% csrf_token %} prints: the same for every form
    return mark_safe("".join(_row(row, actions, csrf_input) for row in rows))


def _row(row, actions, csrf_input: str) -> str:
    """One row's HTML. Every value goes through `e` (html.escape: what format_html and {{ }} do to a
    value, without their checks for lazy strings, a third of the time here); the fragments of other
    tags (session_id, hotline, stop_badge) are already safe HTML."""
    line, e = row.line, escape
    if row.is_stop:
        case = f'<br><span class="mono nowrap">{e(row.case_reference)}</span>' if row.case_reference else ""
        last_column = f'<td data-label="Requested by">{e(row.requested_by)}{case}</td>'
    else:
        last_column = f'<td data-label="Last stop">{stop_badge(row.badge)}</td>'
    resend_url = e(row.resend_url)
    return _ROW.format(
        dom_id=e(row.dom_id),
        poll=_POLL.format(resend_url) if line.resent_open else "",
        since_label="Stuck since" if row.is_stop else "Last update",
        iso=e(line.since.iso),
        since=e(line.since.text),
        age=e(line.age),
        reason=e(line.reason),
        resent=_RESENT.format(e(line.resent_tone), e(line.resent_mark), e(line.resent)) if line.resent else "",
        next_step=e(line.next_step),
        session_id=session_id(row.session_id),
        detail_url=e(row.detail_url),
        evse_id=e(row.evse_id),
        operator_id=e(row.operator_id),
        cpo_name=f' <span class="muted">{e(row.cpo_name)}</span>' if row.cpo_name else "",
        hotline=f"<br>{hotline(row.cpo_hotline, row.cpo_label)}" if row.cpo_hotline else "",
        last_column=last_column,
        resend=_RESEND.format(resend_url) if row.is_stop and actions.resend and not line.resent_open else "",
        close=_CLOSE.format(e(row.close_url), csrf_input, e(row.close_field_id), e(row.close_field_id))
        if actions.close
        else "",
    )
