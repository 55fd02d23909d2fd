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
