"""The usage and cost section of the run page (`genarun serve`): the cells `runs show` prints."""

from __future__ import annotations

from jinja2 import Environment, select_autoescape
from markupsafe import Markup

from genarun.usage.summary import HEAD, RunUsage, unpriced_lines, usage_rows

_SECTION = """<h2 id="usage">Usage and cost</h2><p>{{ note }}</p>
<table class="usage"><tr>{% for h in head %}<th>{{ h }}</th>{% endfor %}</tr>
{% for row in rows %}<tr><th scope="row">{{ row[0] }}</th>{% for cell in row[1:] %}<td>{{ cell }}</td>{% endfor %}</tr>{% endfor %}
</table>{% for line in unpriced %}<p>{{ line }}</p>{% endfor %}"""

_template = Environment(
    autoescape=select_autoescape(default=True, default_for_string=True)
).from_string(_SECTION)


def usage_html(usage: RunUsage) -> Markup:
    """The section as escaped HTML, ready to place in the run page."""
    return Markup(
        _template.render(
            note=usage.note,
            head=[h.lower() for h in HEAD],
            rows=usage_rows(usage),
            unpriced=unpriced_lines(usage),
        )
    )
