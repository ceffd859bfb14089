"""The editor page's markup and script (genarun/server/edit_page.py fills it in).

One form holds the working text and every control; each button names its change (`op`). Without
script a button posts the form and the answer is the page again. The script posts the same form
in the background, one change at a time in order, swaps the page in place (keeping what was
typed in other inputs meanwhile, and the focus), and applies a node's field as soon as it
changes, so its problems show at once. A refusal (a stale token after a server restart) is
said above the form without leaving the page, so no edit is lost; leaving a page with unsaved
changes asks first.
"""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, select_autoescape

from genarun.server.graph_view import render_svg
from genarun.server.run_pages import STYLE

_EDITOR = (
    """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>edit {{ tree }}</title>"""
    + STYLE
    + """<style>
.cols{display:flex;gap:1.5rem;align-items:flex-start;flex-wrap:wrap}.cols>section{flex:1 1 24rem;min-width:20rem}
.outline{list-style:none;padding:0;margin:0}.outline li{border-left:3px solid #ddd;margin:.2rem 0;padding:.2rem .4rem}
.outline li.sel{border-color:#36c;background:#eef4ff}.outline li.bad{border-color:#c00}.outline li.off{opacity:.55}
.outline button.pick{font-weight:600;background:none;border:0;padding:0;cursor:pointer;color:#036;font-size:1em}
.tools button{font-size:.8em;padding:0 .3rem}.uses{color:#555;font-size:.85em}.problem{color:#a00;font-size:.9em;white-space:pre-wrap}
.field{margin:.5rem 0}.field label{font-weight:600}.field small{display:block;color:#555}.req{color:#a00}
textarea{width:100%;font-family:ui-monospace,monospace;font-size:.9em}.field input[type=text]{width:100%}
.status{padding:.4rem .6rem;border-radius:4px}.ok{background:#e8f7e8}.err{background:#fde8e8;color:#800;white-space:pre-wrap}
.dirty{color:#a60;font-weight:600}.row{display:flex;gap:.6rem;align-items:center;flex-wrap:wrap;margin:.6rem 0}
#default-op{position:absolute;left:-9999px}
</style></head><body>
<main id="editor-root" data-dirty="{{ 1 if work.dirty else 0 }}" data-problems="{{ checked.count }}">
<p><a href="/runs">Runs</a> · <a href="/trees">Trees</a> · <a href="/trees/{{ tree|urlencode }}">View {{ tree }}</a> · <a href="/inbox">Inbox</a></p>
<h1>Edit {{ tree }}</h1>
<p class="row" id="summary">{% if checked.valid %}<span class="badge done">valid</span> {{ checked.nodes }} node{{ 's' if checked.nodes != 1 }}{% else %}<span class="badge failed" id="problem-count">{{ checked.count }} problem{{ 's' if checked.count != 1 }}</span> the tree does not run as it is{% endif %}
{% if work.dirty %}<span class="dirty" id="unsaved">unsaved changes</span>{% elif work.saved %}<span id="saved">saved</span>{% endif %}</p>
{% if work.message %}<p class="status {{ 'err' if work.failed else 'ok' }}" id="message" role="{{ 'alert' if work.failed else 'status' }}">{{ work.message }}{% if work.status == 409 %} <a href="/trees/{{ tree|urlencode }}/edit" id="reload">Reload {{ tree }} from disk</a>{% endif %}</p>{% endif %}
{% for note in work.notes %}<p class="status err" role="note">{{ note }}</p>{% endfor %}
<form method="post" id="editor" action="/trees/{{ tree|urlencode }}/edit">
<button id="default-op" name="op" value="apply" tabindex="-1" aria-hidden="true">apply</button>
<input type="hidden" name="csrf" value="{{ csrf }}"><input type="hidden" name="base" value="{{ work.base }}">
<input type="hidden" name="crlf" value="{{ 1 if work.crlf else 0 }}"><input type="hidden" name="sel" value="{{ selected.key if selected else '' }}">
<textarea name="text" hidden>
{{ work.text }}</textarea>
<div class="row"><button name="op" value="save" id="save">Save</button>
<a href="/trees/{{ tree|urlencode }}/edit">Discard changes (reload from disk)</a>
{% if can_start %}<a href="{{ start_href }}">Start a run with options…</a>{% elif checked.valid %}<span>Save to start a run of it.</span>{% endif %}</div>
{% if checked.problems %}<h2>Problems of the file</h2><ul>{% for p in checked.problems %}<li class="problem">{{ p }}</li>{% endfor %}</ul>{% endif %}
<div class="cols"><section aria-label="nodes"><h2>Nodes</h2>
<ol class="outline" id="outline">{% for n in outline %}
<li id="n-{{ n.key }}" data-node="{{ n.id }}" class="{{ 'sel' if n.selected }} {{ 'bad' if n.problems }} {{ 'off' if not n.enabled }}" style="margin-left:{{ n.depth * 1.4 }}rem">
<button class="pick" name="op" value="select:{{ n.key }}" title="edit {{ n.id }}">{{ n.id }}</button> <span class="badge">{{ n.kind }}</span>{% if n.foreach %} <span class="badge">foreach</span>{% endif %}{% if not n.enabled %} <span class="badge">disabled</span>{% endif %}
<span class="tools"><button name="op" value="up:{{ n.key }}" aria-label="move {{ n.id }} up">↑</button><button name="op" value="down:{{ n.key }}" aria-label="move {{ n.id }} down">↓</button><button name="op" value="toggle:{{ n.key }}" aria-label="{{ 'disable' if n.enabled else 'enable' }} {{ n.id }}">{{ 'disable' if n.enabled else 'enable' }}</button><button name="op" value="remove:{{ n.key }}" aria-label="remove {{ n.id }}">remove</button></span>
{% if n.uses %}<div class="uses">uses {{ n.uses|join(', ') }}</div>{% endif %}
{% for p in n.problems %}<div class="problem">{{ p }}</div>{% endfor %}</li>{% endfor %}</ol>
<fieldset><legend>Add a node</legend>
<label>Kind <select name="add_kind" id="add-kind">{% for k, d in kinds %}<option value="{{ k }}" title="{{ d }}">{{ k }}</option>{% endfor %}</select></label>
<label>Id <input name="add_id" id="add-id" size="14" data-op="add"></label>
<label>Under <select name="add_parent" id="add-parent"><option value="">(top level)</option>{% for key, label in parents %}<option value="{{ key }}"{% if key == work.add_parent %} selected{% endif %}>{{ label }}</option>{% endfor %}</select></label>
<button name="op" value="add" id="add">Add</button></fieldset></section>
<section aria-label="selected node" id="node-panel">{% if selected %}
<h2>{{ selected.id or '(no id)' }} <small>({{ selected.kind or 'no kind' }})</small></h2>
<div class="row"><label>Rename to <input name="new_id" id="new-id" value="{{ selected.id }}" size="16" data-op="rename"></label><button name="op" value="rename" id="rename">Rename</button></div>
<div class="row"><label>Move <select name="move_to" id="move-to">{% if selected.top %}<option value="top">to the top level</option>{% endif %}{% for key, label in selected.targets %}<option value="into:{{ key }}">into {{ label }}</option>{% endfor %}</select></label><button name="op" value="move" id="move">Move</button></div>
{% if selected.known %}{% for f in selected.fields %}{{ field(f) }}{% endfor %}
{% if selected.common %}<details><summary>Fields every node has (foreach, when, vars, …)</summary>{% for f in selected.common %}{{ field(f) }}{% endfor %}</details>{% endif %}
<button name="op" value="apply" id="apply">Apply</button>
{% else %}<p>The registry has no kind {{ selected.kind }}: edit this node as YAML.</p>{% endif %}
<details{% if not selected.known %} open{% endif %}><summary>This node as YAML (anything the form cannot say)</summary>
<textarea name="node_yaml" id="node-yaml" rows="10">
{{ selected.yaml }}</textarea><button name="op" value="node_yaml" id="apply-yaml">Apply YAML</button></details>
{% else %}<p>Select a node to edit its fields.</p>{% endif %}</section></div>
<details{% if not outline %} open{% endif %}><summary>The whole file as text</summary>
<textarea name="whole" id="whole" rows="24">
{{ work.text }}</textarea><button name="op" value="text" id="apply-text">Apply text</button></details>
</form>
{% if can_start %}<form method="post" action="/start" id="start-run"><input type="hidden" name="csrf" value="{{ csrf }}"><input type="hidden" name="tree" value="{{ tree }}"><button>Start a run of {{ tree }}</button></form>{% endif %}
{% if svg %}<h2>The tree drawn</h2>{{ svg }}{% endif %}
</main>
<script>
(() => {
  let chain = Promise.resolve();
  const send = (op) => { chain = chain.then(() => post(op)).catch(() => {}); };
  async function post(op) {
    const form = document.getElementById("editor");
    const data = new URLSearchParams(new FormData(form));
    data.set("op", op);
    let html = "";
    try {
      const answer = await fetch(form.action, {method: "POST", body: data, credentials: "same-origin"});
      html = await answer.text();
    } catch (err) {
      return refused("the server did not answer (" + err + ")");
    }
    const parsed = new DOMParser().parseFromString(html, "text/html");
    const fresh = parsed.getElementById("editor-root");
    // A refusal (a stale token after a restart, a lost session) is no editor page: say it
    // here and keep this page, whose edits would otherwise be lost.
    if (!fresh) return refused(parsed.body ? parsed.body.textContent.trim().slice(0, 300) : "no answer");
    const old = document.getElementById("editor-root");
    // What was typed meanwhile (not sent yet) is kept where the page did not change it.
    for (const el of old.querySelectorAll("input[id], textarea[id], select[id]")) {
      const twin = fresh.querySelector("#" + CSS.escape(el.id));
      if (twin && el.tagName !== "SELECT" && el.value !== el.defaultValue && twin.defaultValue === el.defaultValue) twin.value = el.value;
    }
    const focused = document.activeElement && document.activeElement.id;
    const y = window.scrollY;
    old.replaceWith(fresh);
    window.scrollTo(0, y);
    if (focused) { const again = document.getElementById(focused); if (again) again.focus(); }
    document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
  }
  function refused(text) {
    let note = document.getElementById("refused");
    if (!note) {
      note = document.createElement("p");
      note.id = "refused"; note.className = "status err"; note.setAttribute("role", "alert");
      document.getElementById("editor").before(note);
    }
    note.textContent = "Not done: " + text + ". Your edits are still on this page: copy them " +
      "from 'The whole file as text' before reloading.";
  }
  document.addEventListener("keydown", (e) => {
    const op = e.key === "Enter" && e.target.dataset && e.target.dataset.op;
    if (op) { e.preventDefault(); send(op); }
  });
  window.addEventListener("beforeunload", (e) => {
    const root = document.getElementById("editor-root");
    if (root && root.dataset.dirty === "1") e.preventDefault();
  });
  document.addEventListener("submit", (e) => {
    if (e.target.id !== "editor") return;
    e.preventDefault();
    send(e.submitter && e.submitter.name === "op" ? e.submitter.value : "apply");
  });
  document.addEventListener("change", (e) => {
    if (e.target.closest && e.target.closest("[data-auto]")) send("apply");
  });
})();
</script></body></html>"""
)

_FIELD = """{% macro field(f) %}<div class="field" data-auto>
<input type="hidden" name="t.{{ f.name }}" value="{{ f.widget }}"><label for="f-{{ f.name }}">{{ f.name }}{% if f.required %} <span class="req" title="required">*</span>{% endif %}</label>
{% if f.widget == 'choice' %}<select name="f.{{ f.name }}" id="f-{{ f.name }}"><option value="">(not set)</option>{% for o in f.options %}<option{% if o == f.value %} selected{% endif %}>{{ o }}</option>{% endfor %}{% if f.value and f.value not in f.options %}<option selected>{{ f.value }}</option>{% endif %}</select>
{% elif f.widget == 'flag' %}<select name="f.{{ f.name }}" id="f-{{ f.name }}"><option value="">(not set)</option><option{% if f.value == 'true' %} selected{% endif %}>true</option><option{% if f.value == 'false' %} selected{% endif %}>false</option></select>
{% elif f.widget == 'yaml' %}<textarea name="f.{{ f.name }}" id="f-{{ f.name }}" rows="{{ [3, f.value.count('\\n') + 1]|max }}" placeholder="YAML">
{{ f.value }}</textarea>
{% elif f.widget == 'box' or '\\n' in f.value or f.value|length > 70 %}<textarea name="f.{{ f.name }}" id="f-{{ f.name }}" rows="{{ [2, f.value.count('\\n') + 1]|max }}">
{{ f.value }}</textarea>
{% else %}<input type="text" name="f.{{ f.name }}" id="f-{{ f.name }}" value="{{ f.value }}">{% endif %}
{% if f.description %}<small>{{ f.description }}</small>{% endif %}</div>{% endmacro %}"""

_env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
_template = _env.from_string(_FIELD + _EDITOR)


def render_editor(context: dict[str, Any]) -> str:
    checked = context["checked"]
    graph = checked.graph
    keys = {o["id"]: o["key"] for o in reversed(context["outline"])}
    svg = render_svg(graph, lambda n: f"#n-{keys.get(n.id, '')}") if graph.nodes else ""
    return _template.render(svg=svg, **context)
