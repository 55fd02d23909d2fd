"""The emulator's read-only web page, served at ``GET /``.

One self-contained HTML document (inline CSS and vanilla JavaScript, no external assets) that
polls the emulator's JSON read API on the same origin about once a second and shows what the
emulator accepted (users with their merged attributes and event timelines, devices), what it
dropped and why, and every request it answered.

Every value that came from a request is put into the page with ``textContent``, never parsed
as HTML, so an attribute such as ``<img src=x onerror=...>`` shows as text. The page reads no
credentials and renders only named fields, so the API key and the ``Authorization`` header
never reach it.

Stable hooks for tests: ``#users`` (rows ``tr[data-customer-id]``), ``#user-detail``,
``#events`` (rows ``[data-action]``), ``#devices`` (rows ``[data-device-id]``), ``#dropped``
(rows ``[data-reason]``), ``#requests`` (rows ``[data-status]``), summary numbers
``[data-count=users|devices|events|dropped|requests]``, ``#status`` (``data-state`` is
``live`` or ``offline``).
"""

from __future__ import annotations

import base64
import hashlib

__all__ = ["render_page"]

_CSS = r"""
:root {
  --bg: #f5f6f8; --panel: #ffffff; --ink: #1d2330; --muted: #6b7385; --line: #e3e6ec;
  --accent: #3554d1; --accent-soft: #eaeefc; --ok: #1f8a4c; --ok-soft: #e5f5ec;
  --warn: #a35b00; --warn-soft: #fdf1df; --bad: #b42318; --bad-soft: #fdeceb;
  --mono: ui-monospace, SFMono-Regular, "SF Mono", Menlo, Consolas, "Liberation Mono", monospace;
}
* { box-sizing: border-box; }
html, body { margin: 0; padding: 0; }
body {
  background: var(--bg); color: var(--ink);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
        "Noto Sans", "Liberation Sans", sans-serif;
}
header {
  position: sticky; top: 0; z-index: 5; display: flex; align-items: center; gap: 16px;
  padding: 12px 24px; background: #141a2e; color: #f2f4fa;
  box-shadow: 0 1px 0 rgba(0,0,0,.2);
}
header h1 { font-size: 16px; font-weight: 600; margin: 0; letter-spacing: .2px; }
header h1 span { color: #9aa6c9; font-weight: 400; }
header .app { font-family: var(--mono); font-size: 12px; color: #c9d1ea;
  background: rgba(255,255,255,.08); padding: 3px 8px; border-radius: 6px; }
header .spacer { flex: 1; }
#app-select { font: inherit; font-size: 12px; padding: 2px 6px; border-radius: 6px;
  border: 1px solid #39415c; background: #1f2640; color: #f2f4fa; }
#detail-devices { list-style: none; margin: 0; padding: 0; display: grid; gap: 6px; }
#detail-devices li { display: flex; flex-wrap: wrap; gap: 6px; align-items: baseline; }
#updated { font-family: var(--mono); font-size: 12px; color: #9aa6c9; }
#status { display: inline-flex; align-items: center; gap: 8px; font-size: 12px; color: #c9d1ea; }
#status::before { content: ""; width: 8px; height: 8px; border-radius: 50%; background: #8a93a8; }
#status[data-state="live"]::before { background: #3ccf7a;
  box-shadow: 0 0 0 3px rgba(60,207,122,.2); }
#status[data-state="offline"]::before { background: #ff6b5e;
  box-shadow: 0 0 0 3px rgba(255,107,94,.2); }
main { padding: 20px 24px 40px; max-width: 1480px; margin: 0 auto; }
#summary { display: grid; grid-template-columns: repeat(5, minmax(0, 1fr)); gap: 12px;
  margin-bottom: 20px; }
.stat { background: var(--panel); border: 1px solid var(--line); border-radius: 10px;
  padding: 12px 16px; }
.stat .label { color: var(--muted); font-size: 12px; text-transform: uppercase;
  letter-spacing: .6px; }
.stat .value { font-size: 26px; font-weight: 600; font-variant-numeric: tabular-nums; }
.stat.dropped .value:not([data-zero]) { color: var(--bad); }
.grid { display: grid; grid-template-columns: minmax(0, 3fr) minmax(0, 2fr); gap: 20px;
  align-items: start;
  margin-bottom: 20px; }
section { background: var(--panel); border: 1px solid var(--line); border-radius: 10px;
  margin-bottom: 20px; overflow: hidden; }
.grid section { margin-bottom: 0; }
section > h2 { display: flex; align-items: baseline; gap: 10px; margin: 0; padding: 12px 16px;
  font-size: 14px; font-weight: 600; border-bottom: 1px solid var(--line); }
section > h2 .note { color: var(--muted); font-weight: 400; font-size: 12px; }
section > h2 .spacer { flex: 1; }
.scroll { max-height: 460px; overflow: auto; }
table { width: 100%; border-collapse: collapse; }
th, td { text-align: left; vertical-align: top; padding: 7px 12px;
  border-bottom: 1px solid var(--line); }
th { position: sticky; top: 0; background: #fafbfc; color: var(--muted); font-weight: 500;
  font-size: 12px; text-transform: uppercase; letter-spacing: .4px; z-index: 1; }
tbody tr:last-child td { border-bottom: none; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.mono, .mono { font-family: var(--mono); font-size: 12.5px; }
td.time { white-space: nowrap; color: var(--muted); font-variant-numeric: tabular-nums; }
#users tbody tr { cursor: pointer; }
#users tbody tr:hover { background: #f7f8fb; }
#users tbody tr[aria-selected="true"] { background: var(--accent-soft);
  box-shadow: inset 3px 0 0 var(--accent); }
.empty td { color: var(--muted); text-align: center; padding: 22px; font-style: italic;
  cursor: default; }
.attrs { display: flex; flex-wrap: wrap; gap: 4px 6px; }
.attr { display: inline-flex; max-width: 100%; border: 1px solid var(--line); border-radius: 6px;
  font-size: 12px; overflow: hidden; background: #fbfbfd; }
.attr .k { padding: 1px 6px; color: var(--muted); background: #f1f3f7;
  border-right: 1px solid var(--line); }
.attr .v { padding: 1px 6px; font-family: var(--mono); font-size: 11.5px;
  overflow-wrap: anywhere; white-space: pre-wrap; }
.none { color: var(--muted); }
.badge { display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: 12px;
  font-weight: 600; font-variant-numeric: tabular-nums; }
.badge.ok { color: var(--ok); background: var(--ok-soft); }
.badge.warn { color: var(--warn); background: var(--warn-soft); }
.badge.bad { color: var(--bad); background: var(--bad-soft); }
.badge.plain { color: var(--muted); background: #eef0f4; font-weight: 500; }
.reason { color: var(--bad); font-weight: 500; }
#user-detail .body { padding: 14px 16px; }
#user-detail .hint { color: var(--muted); padding: 28px 16px; text-align: center; }
#user-detail h3 { margin: 0 0 8px; font-size: 13px; color: var(--muted); font-weight: 500;
  text-transform: uppercase; letter-spacing: .4px; }
#user-detail .who { font-family: var(--mono); font-size: 15px; font-weight: 600;
  margin-bottom: 12px;
  overflow-wrap: anywhere; }
#user-detail .block { margin-bottom: 16px; }
#events { list-style: none; margin: 0; padding: 0 0 0 14px; border-left: 2px solid var(--line); }
#events li { position: relative; padding: 0 0 14px 14px; }
#events li::before { content: ""; position: absolute; left: -21px; top: 5px; width: 10px;
  height: 10px;
  border-radius: 50%; background: var(--panel); border: 2px solid var(--accent); }
#events .head { display: flex; flex-wrap: wrap; align-items: baseline; gap: 8px;
  margin-bottom: 4px; }
#events .action { font-weight: 600; overflow-wrap: anywhere; }
#events .when { color: var(--muted); font-size: 12px; font-variant-numeric: tabular-nums; }
#events .empty-li { color: var(--muted); font-style: italic; }
#events .empty-li::before { display: none; }
.filter { font: inherit; font-size: 12px; padding: 4px 8px; border: 1px solid var(--line);
  border-radius: 6px; min-width: 180px; }
.filter:focus { outline: 2px solid var(--accent-soft); border-color: var(--accent); }
#error { display: none; margin-bottom: 16px; padding: 10px 14px; border-radius: 8px;
  background: var(--bad-soft); color: var(--bad); border: 1px solid #f5c6c2; }
#error[data-visible] { display: block; }
footer { color: var(--muted); font-size: 12px; text-align: center; padding-bottom: 24px; }
@media (max-width: 980px) {
  .grid { grid-template-columns: minmax(0, 1fr); }
  #summary { grid-template-columns: repeat(2, minmax(0, 1fr)); }
}
"""

_BODY = r"""
<header>
  <h1>moetrack <span>&middot; MoEngage Data API emulator</span></h1>
  <span class="app" id="app-id" title="app id">&hellip;</span>
  <select id="app-select" aria-label="app" hidden></select>
  <span class="spacer"></span>
  <span id="updated"></span>
  <span id="status" data-state="connecting">connecting&hellip;</span>
</header>
<main>
  <div id="error" role="alert"></div>
  <div id="summary">
    <div class="stat"><div class="label">Users</div>
      <div class="value" data-count="users">0</div></div>
    <div class="stat"><div class="label">Devices</div>
      <div class="value" data-count="devices">0</div></div>
    <div class="stat"><div class="label">Events</div>
      <div class="value" data-count="events">0</div></div>
    <div class="stat dropped"><div class="label">Dropped</div>
      <div class="value" data-count="dropped">0</div></div>
    <div class="stat"><div class="label">Requests</div>
      <div class="value" data-count="requests">0</div></div>
  </div>
  <div class="grid">
    <section>
      <h2>Users <span class="note" id="users-note"></span><span class="spacer"></span>
        <input class="filter" id="user-filter" type="search" placeholder="Filter users&hellip;"
               aria-label="Filter users"></h2>
      <div class="scroll">
        <table id="users">
          <thead><tr><th>customer_id</th><th>attributes</th><th class="num">events</th></tr></thead>
          <tbody><tr class="empty"><td colspan="3">No users yet</td></tr></tbody>
        </table>
      </div>
    </section>
    <section id="user-detail">
      <h2>Event timeline <span class="note" id="detail-note"></span></h2>
      <div class="hint" id="detail-hint">Click a user to see their attributes and events.</div>
      <div class="body" id="detail-body" hidden>
        <div class="who" id="detail-customer-id"></div>
        <div class="block"><h3>Attributes</h3><div class="attrs" id="detail-attributes"></div></div>
        <div class="block" id="detail-devices-block" hidden><h3>Devices</h3>
          <ul id="detail-devices"></ul></div>
        <div class="block"><h3>Events</h3><ol id="events"></ol></div>
      </div>
    </section>
  </div>
  <section>
    <h2>Devices <span class="note" id="devices-note"></span></h2>
    <div class="scroll">
      <table id="devices">
        <thead><tr><th>device_id</th><th>customer_id</th><th>platform</th><th>push_id</th>
          <th>attributes</th></tr></thead>
        <tbody><tr class="empty"><td colspan="5">No devices yet</td></tr></tbody>
      </table>
    </div>
  </section>
  <section>
    <h2>Dropped elements <span class="note" id="dropped-note"></span></h2>
    <div class="scroll">
      <table id="dropped">
        <thead><tr><th>request</th><th>element</th><th>customer_id</th><th>reason</th>
          <th>field</th></tr></thead>
        <tbody><tr class="empty"><td colspan="5">Nothing dropped</td></tr></tbody>
      </table>
    </div>
  </section>
  <section>
    <h2>Requests <span class="note" id="requests-note"></span></h2>
    <div class="scroll">
      <table id="requests">
        <thead><tr><th>time</th><th>endpoint</th><th>status</th><th>error</th>
          <th class="num">bytes</th><th class="num">elements</th><th class="num">users</th>
          <th class="num">events</th><th class="num">dropped</th></tr></thead>
        <tbody><tr class="empty"><td colspan="9">No requests yet</td></tr></tbody>
      </table>
    </div>
  </section>
</main>
<footer>Read-only view &middot; refreshes every second &middot; data lives in memory only</footer>
"""

_JS = r"""
(function () {
  "use strict";
  var POLL_MS = 1000;
  var MAX_ROWS = 300;
  var params = new URLSearchParams(window.location.search);
  var appId = params.get("app_id");
  var selected = params.get("customer_id");
  var lastState = "";
  var lastUser = "";
  var filterText = "";

  function $(id) { return document.getElementById(id); }

  function query(extra) {
    var q = new URLSearchParams();
    if (appId) { q.set("app_id", appId); }
    if (extra) { Object.keys(extra).forEach(function (k) { q.set(k, extra[k]); }); }
    var s = q.toString();
    return s ? "?" + s : "";
  }

  function getJSON(path) {
    return fetch(path, { cache: "no-store", credentials: "omit",
                         headers: { "Accept": "application/json" } })
      .then(function (r) {
        if (!r.ok) { throw new Error(path + " answered " + r.status); }
        return r.text();
      });
  }

  function pick(obj) {
    if (!obj || typeof obj !== "object") { return undefined; }
    for (var i = 1; i < arguments.length; i++) {
      var v = obj[arguments[i]];
      if (v !== undefined && v !== null) { return v; }
    }
    return undefined;
  }

  /* A list of records; an object keyed by id becomes a list carrying the key. */
  function asList(x, keyName) {
    if (Array.isArray(x)) { return x; }
    if (x && typeof x === "object") {
      return Object.keys(x).map(function (k) {
        var v = x[k];
        var isRecord = v && typeof v === "object" && !Array.isArray(v);
        var rec = isRecord ? Object.assign({}, v) : { value: v };
        if (rec[keyName] === undefined) { rec[keyName] = k; }
        return rec;
      });
    }
    return [];
  }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }

  function td(text, cls) { return el("td", cls, text === undefined || text === null ? "" : text); }

  function fmtValue(v) {
    if (typeof v === "string") { return v; }
    if (v === undefined) { return ""; }
    try { return JSON.stringify(v); } catch (e) { return String(v); }
  }

  function toDate(t) {
    if (t === undefined || t === null || t === "") { return null; }
    var d;
    if (typeof t === "number") { d = new Date(t > 1e12 ? t : t * 1000); }
    else if (/^\d+(\.\d+)?$/.test(String(t))) {
      var n = parseFloat(t); d = new Date(n > 1e12 ? n : n * 1000);
    } else { d = new Date(String(t)); }
    return isNaN(d.getTime()) ? null : d;
  }

  function pad(n, w) { var s = String(n); while (s.length < (w || 2)) { s = "0" + s; } return s; }

  function fmtTime(t, withDate) {
    var d = toDate(t);
    if (!d) { return t === undefined || t === null ? "" : String(t); }
    var s = pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) +
            "." + pad(d.getMilliseconds(), 3);
    if (withDate) {
      s = d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + s;
    }
    return s;
  }

  function timeCell(t) {
    var c = td(fmtTime(t, false), "time");
    var d = toDate(t);
    if (d) { c.title = d.toISOString(); }
    return c;
  }

  function attrsNode(attrs, skip) {
    var box = el("div", "attrs");
    var keys = attrs && typeof attrs === "object" ? Object.keys(attrs) : [];
    keys = keys.filter(function (k) { return !skip || skip.indexOf(k) < 0; });
    if (!keys.length) { box.appendChild(el("span", "none", "\u2014")); return box; }
    keys.forEach(function (k) {
      var chip = el("span", "attr");
      chip.appendChild(el("span", "k", k));
      chip.appendChild(el("span", "v", fmtValue(attrs[k])));
      box.appendChild(chip);
    });
    return box;
  }

  function fill(tableId, rows, emptyText, cols) {
    var tbody = $(tableId).tBodies[0];
    if (!rows.length) {
      var tr = el("tr", "empty");
      var c = td(emptyText); c.colSpan = cols; tr.appendChild(c);
      tbody.replaceChildren(tr);
    } else {
      tbody.replaceChildren.apply(tbody, rows);
    }
  }

  function note(id, shown, total) {
    var text = total ? String(total) : "";
    if (total > shown) { text = "latest " + shown + " of " + total; }
    $(id).textContent = text;
  }

  function setCount(name, n) {
    var node = document.querySelector('[data-count="' + name + '"]');
    node.textContent = String(n);
    if (n) { node.removeAttribute("data-zero"); } else { node.setAttribute("data-zero", ""); }
  }

  function badge(status) {
    var s = Number(status);
    var cls = "plain";
    if (s >= 200 && s < 300) { cls = "ok"; }
    else if (s >= 400 && s < 500) { cls = "warn"; }
    else if (s >= 500) { cls = "bad"; }
    return el("span", "badge " + cls, status === undefined ? "\u2014" : status);
  }

  function countOf(v) {
    if (Array.isArray(v)) { return v.length; }
    if (typeof v === "number") { return v; }
    if (v && typeof v === "object") { return Object.keys(v).length; }
    return v === undefined || v === null ? "" : v;
  }

  function newestFirst(list) {
    return list.slice().reverse();
  }

  function customerOf(rec) {
    var c = pick(rec, "customer_id", "id");
    if (c === undefined && rec && rec.element) { c = pick(rec.element, "customer_id"); }
    return c;
  }

  /* ---- users ---- */
  /* The read API keys users by customer_id with their merged attributes as the value. */
  function userList(x) {
    if (Array.isArray(x)) { return x; }
    if (!x || typeof x !== "object") { return []; }
    return Object.keys(x).map(function (k) {
      return { customer_id: k, attributes: x[k] };
    });
  }

  function renderUsers(users, eventsByUser) {
    var shown = users;
    if (filterText) {
      var f = filterText.toLowerCase();
      shown = users.filter(function (u) {
        var text = String(customerOf(u)) + " " + fmtValue(pick(u, "attributes") || {});
        return text.toLowerCase().indexOf(f) >= 0;
      });
    }
    var total = shown.length;
    shown = shown.slice(0, MAX_ROWS);
    var rows = shown.map(function (u) {
      var cid = String(customerOf(u));
      var tr = el("tr");
      tr.setAttribute("data-customer-id", cid);
      tr.setAttribute("aria-selected", cid === selected ? "true" : "false");
      tr.appendChild(td(cid, "mono"));
      var a = td(); a.appendChild(attrsNode(pick(u, "attributes") || {})); tr.appendChild(a);
      var n = pick(u, "event_count", "events_count", "events");
      if (n === undefined) { n = eventsByUser[cid] || 0; }
      tr.appendChild(td(countOf(n), "num"));
      return tr;
    });
    fill("users", rows, filterText ? "No user matches the filter" : "No users yet", 3);
    note("users-note", shown.length, total);
  }

  /* ---- devices ---- */
  function renderDevices(devices) {
    var shown = devices.slice(0, MAX_ROWS);
    var rows = shown.map(function (d) {
      var attrs = pick(d, "attributes") || {};
      var did = pick(d, "device_id", "id");
      var tr = el("tr");
      tr.setAttribute("data-device-id", did === undefined ? "" : String(did));
      var cid = pick(d, "customer_id");
      tr.setAttribute("data-customer-id", cid === undefined ? "" : String(cid));
      tr.appendChild(td(did, "mono"));
      tr.appendChild(td(cid, "mono"));
      var platform = pick(d, "platform");
      if (platform === undefined) { platform = attrs.platform; }
      var pushId = pick(d, "push_id");
      if (pushId === undefined) { pushId = attrs.push_id; }
      tr.appendChild(td(fmtValue(platform)));
      tr.appendChild(td(fmtValue(pushId), "mono"));
      var a = td(); a.appendChild(attrsNode(attrs, ["platform", "push_id"])); tr.appendChild(a);
      return tr;
    });
    fill("devices", rows, "No devices yet", 5);
    note("devices-note", shown.length, devices.length);
  }

  /* ---- dropped ---- */
  /* A dropped action is recorded with the action itself as the element. */
  function droppedWhat(d) {
    var element = pick(d, "element");
    var kind = pick(d, "element_type", "type");
    if (element && typeof element === "object" && !Array.isArray(element)) {
      if (kind === undefined && element.type !== undefined) { kind = element.type; }
      if (kind === undefined && element.action !== undefined) {
        return "action " + fmtValue(element.action);
      }
    }
    return kind === undefined ? "element" : fmtValue(kind);
  }

  function renderDropped(dropped) {
    var list = newestFirst(dropped);
    var shown = list.slice(0, MAX_ROWS);
    var rows = shown.map(function (d) {
      var tr = el("tr");
      var reason = pick(d, "reason", "message", "error");
      tr.setAttribute("data-reason", reason === undefined ? "" : fmtValue(reason));
      var where = fmtValue(pick(d, "endpoint") || "");
      var idx = pick(d, "index", "element_index");
      if (idx !== undefined) { where += (where ? " " : "") + "#" + idx; }
      var whereCell = td(where, "mono");
      var t = toDate(pick(d, "time", "received_at", "timestamp"));
      if (t) { whereCell.title = t.toISOString(); }
      tr.appendChild(whereCell);
      tr.appendChild(td(droppedWhat(d), "mono"));
      tr.appendChild(td(fmtValue(customerOf(d)), "mono"));
      tr.appendChild(td(fmtValue(reason), "reason"));
      tr.appendChild(td(fmtValue(pick(d, "field", "key", "path")), "mono"));
      return tr;
    });
    fill("dropped", rows, "Nothing dropped", 5);
    note("dropped-note", shown.length, dropped.length);
  }

  /* ---- requests ---- */
  function renderRequests(requests) {
    var list = newestFirst(requests);
    var shown = list.slice(0, MAX_ROWS);
    var rows = shown.map(function (r) {
      var tr = el("tr");
      var status = pick(r, "status", "status_code");
      tr.setAttribute("data-status", status === undefined ? "" : String(status));
      tr.appendChild(timeCell(pick(r, "time", "received_at", "timestamp", "at")));
      var method = pick(r, "method");
      var path = pick(r, "endpoint", "path", "url");
      tr.appendChild(td((method ? method + " " : "") + (path === undefined ? "" : path), "mono"));
      var s = td(); s.appendChild(badge(status)); tr.appendChild(s);
      var err = pick(r, "error_type", "error");
      if (err && typeof err === "object") { err = pick(err, "type", "message"); }
      var errText = err === undefined ? "" : fmtValue(err);
      /* An injected fault (dropped connection, delay) is no error type of the API. */
      var fault = pick(r, "fault");
      if (fault !== undefined) { errText += (errText ? " \u00b7 " : "") + "fault: " + fault; }
      var errCell = td(errText);
      var msg = pick(r, "error_message", "message");
      if (msg !== undefined) { errCell.title = fmtValue(msg); }
      tr.appendChild(errCell);
      tr.appendChild(td(pick(r, "bytes", "body_bytes", "size", "content_length"), "num"));
      tr.appendChild(td(countOf(pick(r, "elements", "element_count", "n_elements")), "num"));
      tr.appendChild(td(countOf(pick(r, "users", "user_count", "n_users")), "num"));
      tr.appendChild(td(countOf(pick(r, "events", "event_count", "n_events", "actions")), "num"));
      tr.appendChild(td(countOf(pick(r, "dropped", "dropped_count")), "num"));
      return tr;
    });
    fill("requests", rows, "No requests yet", 9);
    note("requests-note", shown.length, requests.length);
  }

  /* ---- selected user ---- */
  function eventTime(e) {
    return pick(e, "current_time", "time", "user_time", "received_at", "timestamp");
  }

  function renderDetail(cid, user, events) {
    $("detail-hint").hidden = true;
    $("detail-body").hidden = false;
    $("detail-customer-id").textContent = cid;
    $("user-detail").setAttribute("data-customer-id", cid);
    var box = $("detail-attributes");
    box.replaceChildren(attrsNode(user ? (pick(user, "attributes") || {}) : {}));
    var devs = asList(user ? (pick(user, "devices") || []) : [], "device_id");
    $("detail-devices-block").hidden = !devs.length;
    $("detail-devices").replaceChildren.apply($("detail-devices"), devs.map(function (d) {
      var li = el("li");
      var attrs = pick(d, "attributes") || {};
      li.setAttribute("data-device-id", fmtValue(pick(d, "device_id")));
      li.appendChild(el("span", "mono", fmtValue(pick(d, "device_id"))));
      if (attrs.platform !== undefined) {
        li.appendChild(el("span", "badge plain", fmtValue(attrs.platform)));
      }
      return li;
    }));
    var items = events.map(function (e) {
      var li = el("li");
      var action = pick(e, "action", "name");
      li.setAttribute("data-action", action === undefined ? "" : fmtValue(action));
      var head = el("div", "head");
      head.appendChild(el("span", "action", fmtValue(action)));
      var t = eventTime(e);
      var when = el("span", "when", fmtTime(t, true));
      var d = toDate(t); if (d) { when.title = d.toISOString(); }
      head.appendChild(when);
      var platform = pick(e, "platform");
      if (platform !== undefined) {
        head.appendChild(el("span", "badge plain", fmtValue(platform)));
      }
      var did = pick(e, "device_id");
      if (did !== undefined && String(did) !== cid) {
        head.appendChild(el("span", "when mono", "device " + fmtValue(did)));
      }
      var ver = pick(e, "app_version");
      if (ver !== undefined) { head.appendChild(el("span", "when", "v" + fmtValue(ver))); }
      li.appendChild(head);
      li.appendChild(attrsNode(pick(e, "attributes") || {}));
      return li;
    });
    var list = $("events");
    if (!items.length) {
      list.replaceChildren(el("li", "empty-li", "No events for this user yet"));
    } else {
      list.replaceChildren.apply(list, items);
    }
    var n = items.length;
    $("detail-note").textContent = n ? n + (n === 1 ? " event" : " events") : "";
  }

  function loadUser() {
    if (!selected) { return Promise.resolve(); }
    var cid = selected;
    return getJSON("/_emulator/users/" + encodeURIComponent(cid) + query())
      .then(function (text) {
        if (cid !== selected || text === lastUser) { return; }
        lastUser = text;
        var data = JSON.parse(text);
        var user = pick(data, "user") || data;
        var events = asList(pick(data, "events") || pick(user, "events") || [], "action");
        renderDetail(cid, user, events);
      }, function () {
        /* Not stored (yet): show what the state knows, an empty timeline. */
        if (cid !== selected) { return; }
        if (lastUser !== "missing:" + cid) {
          lastUser = "missing:" + cid;
          renderDetail(cid, null, []);
        }
      });
  }

  function select(cid) {
    selected = cid;
    lastUser = "";
    var rows = document.querySelectorAll("#users tbody tr[data-customer-id]");
    Array.prototype.forEach.call(rows, function (r) {
      var on = r.getAttribute("data-customer-id") === cid;
      r.setAttribute("aria-selected", on ? "true" : "false");
    });
    var q = new URLSearchParams(window.location.search);
    q.set("customer_id", cid);
    history.replaceState(null, "", "?" + q.toString());
    loadUser();
  }

  /* ---- apps: a switcher when the emulator knows more than one ---- */
  function renderApps(apps, current) {
    var sel = $("app-select");
    var ids = apps.map(function (a) { return String(pick(a, "app_id")); });
    sel.hidden = ids.length < 2;
    $("app-id").hidden = !sel.hidden;
    if (sel.getAttribute("data-apps") === ids.join("\n")) {
      sel.value = String(current);
      return;
    }
    sel.setAttribute("data-apps", ids.join("\n"));
    sel.replaceChildren.apply(sel, ids.map(function (id) {
      var o = el("option", null, "app " + id);
      o.value = id;
      return o;
    }));
    sel.value = String(current);
  }

  /* ---- polling ---- */
  var memo = {};
  function changed(name, value) {
    var text = JSON.stringify(value);
    if (memo[name] === text) { return false; }
    memo[name] = text;
    return true;
  }

  function applyState(text) {
    var state = JSON.parse(text);
    var users = userList(pick(state, "users"));
    var devices = asList(pick(state, "devices") || [], "device_id");
    var events = asList(pick(state, "events") || [], "action");
    var dropped = asList(pick(state, "dropped") || [], "reason");
    var requests = asList(pick(state, "requests") || [], "path");
    var counts = pick(state, "counts") || {};
    var eventsByUser = {};
    events.forEach(function (e) {
      var c = String(customerOf(e));
      eventsByUser[c] = (eventsByUser[c] || 0) + 1;
    });
    var shownApp = pick(state, "app_id") || appId;
    $("app-id").textContent = shownApp ? "app " + shownApp : "default app";
    renderApps(asList(pick(state, "apps") || [], "app_id"), shownApp);
    /* Rebuild a table only when what it shows changed, so rows under the pointer stay put. */
    if (changed("users", [users, eventsByUser, filterText])) { renderUsers(users, eventsByUser); }
    if (changed("devices", devices)) { renderDevices(devices); }
    if (changed("dropped", dropped)) { renderDropped(dropped); }
    if (changed("requests", requests)) { renderRequests(requests); }
    var lists = { users: users, devices: devices, events: events, dropped: dropped,
                  requests: requests };
    Object.keys(lists).forEach(function (name) {
      var n = pick(counts, name);
      setCount(name, n === undefined ? lists[name].length : countOf(n));
    });
  }

  function setStatus(ok, message) {
    var s = $("status");
    s.setAttribute("data-state", ok ? "live" : "offline");
    s.textContent = ok ? "live" : "offline \u2014 retrying";
    var e = $("error");
    if (ok) { e.removeAttribute("data-visible"); e.textContent = ""; }
    else { e.setAttribute("data-visible", ""); e.textContent = message; }
  }

  function tick() {
    getJSON("/_emulator/state" + query())
      .then(function (text) {
        if (text !== lastState) { lastState = text; applyState(text); }
        setStatus(true, "");
        $("updated").textContent = "updated " + fmtTime(Date.now(), false);
        return loadUser();
      })
      .catch(function (err) {
        /* fetch() rejects with a TypeError when nothing answers at all. */
        var why = err instanceof TypeError ? "the emulator is not answering (stopped?)"
          : (err && err.message ? err.message : String(err));
        setStatus(false, "Cannot read the emulator: " + why + ". Retrying every second.");
      })
      .then(function () { window.setTimeout(tick, POLL_MS); });
  }

  $("users").addEventListener("click", function (ev) {
    var tr = ev.target.closest ? ev.target.closest("tr[data-customer-id]") : null;
    if (tr) { select(tr.getAttribute("data-customer-id")); }
  });
  $("app-select").addEventListener("change", function (ev) {
    appId = ev.target.value;
    selected = null;
    memo = {};
    lastState = "";
    lastUser = "";
    $("detail-hint").hidden = false;
    $("detail-body").hidden = true;
    $("user-detail").removeAttribute("data-customer-id");
    $("detail-note").textContent = "";
    var q = new URLSearchParams();
    q.set("app_id", appId);
    history.replaceState(null, "", "?" + q.toString());
  });
  $("user-filter").addEventListener("input", function (ev) {
    filterText = ev.target.value.trim();
    if (lastState) { applyState(lastState); }
  });
  tick();
})();
"""


def _sha256(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


# Defence in depth behind textContent: only this page's own script and style run, nothing is
# loaded from elsewhere, and the only network access is the same-origin JSON API.
_CSP = (
    "default-src 'none'; "
    f"script-src {_sha256(_JS)}; "
    f"style-src {_sha256(_CSS)}; "
    "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'"
)

_PAGE = (
    "<!doctype html>\n"
    '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
    f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
    '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
    '<meta name="referrer" content="no-referrer">\n'
    '<link rel="icon" href="data:,">\n'
    "<title>moetrack emulator</title>\n"
    f"<style>{_CSS}</style>\n</head>\n<body>\n{_BODY}\n"
    f"<script>{_JS}</script>\n</body>\n</html>\n"
)


def render_page() -> str:
    """The whole page: one HTML document with its CSS and script inline."""
    return _PAGE
