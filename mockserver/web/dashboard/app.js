/* mockserver dashboard: a live view of the fake through its control plane (/__mock__/…) only.
 *
 * No framework and no build step. Every view polls once a second (never two polls at once;
 * a slow answer stretches the period) and re-renders only what changed. Lists are paged on
 * the server when it understands limit/offset/order/status (GET tasks answers `total`),
 * and sliced here when it does not.
 */
(() => {
  "use strict";

  const BASE = new URL("./", location.href); // the control plane: the page is served at /__mock__/
  const MEDIA = new URL("../media/", BASE); // public result files: /media/{task_id}/{name}
  const TOKEN_KEY = "mockserver.controlToken";
  const USD_PER_CREDIT = 0.1; // when the ledger does not say
  const JOURNAL_CAP = 2000; // newest journal entries kept in the page
  const PAGE_SIZES = [25, 50, 100, 200];
  const FINAL = new Set(["SUCCESS", "FAILURE"]);

  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

  // -- small helpers --------------------------------------------------------------------------

  const ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  const esc = (v) => (v === null || v === undefined ? "" : String(v).replace(/[&<>"']/g, (c) => ESC[c]));
  const nfCredits = new Intl.NumberFormat("en-US", { maximumFractionDigits: 2 });
  const nfUsd = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  const nfInt = new Intl.NumberFormat("en-US");
  const credits = (x) => (typeof x === "number" ? nfCredits.format(x) : "—");
  const usd = (x) => (typeof x === "number" ? (x < 0 ? "−$" : "$") + nfUsd.format(Math.abs(x)) : "—");
  const pad = (n) => String(n).padStart(2, "0");

  function isoTime(t) {
    if (typeof t !== "number") return "";
    return new Date(t * 1000).toISOString().replace("T", " ").replace("Z", " UTC");
  }
  function clockTime(t) {
    if (typeof t !== "number") return "—";
    const d = new Date(t * 1000);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }
  function dateTime(t) {
    if (typeof t !== "number") return "—";
    const d = new Date(t * 1000);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${clockTime(t)}`;
  }
  function ago(t, now) {
    if (typeof t !== "number" || typeof now !== "number") return "";
    const s = Math.max(0, now - t);
    if (s < 60) return `${Math.floor(s)} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
    return `${Math.floor(s / 86400)} d ago`;
  }
  function seconds(s) {
    if (typeof s !== "number") return "";
    return s < 10 ? `${s.toFixed(1)} s` : `${Math.round(s)} s`;
  }
  function qs(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) {
      if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
    }
    const s = q.toString();
    return s ? "?" + s : "";
  }
  function debounce(fn, ms) {
    let t = null;
    return (...args) => {
      clearTimeout(t);
      t = setTimeout(() => fn(...args), ms);
    };
  }
  const statusClass = (code) => (code >= 500 ? "s5" : code >= 400 ? "s4" : code >= 200 && code < 300 ? "s2" : "");
  const json = (v) => esc(JSON.stringify(v, null, 2));

  // -- the control plane token -----------------------------------------------------------------

  // The token lives in sessionStorage (this tab, gone when it closes), never in localStorage,
  // where any page the fake's origin ever serves could read it. It arrives in the URL fragment
  // (#token=…), which is never sent to a server and so never reaches an access log; ?token= is
  // still read, then removed from the address bar.
  function storage(op, value) {
    try {
      if (op === "get") return sessionStorage.getItem(TOKEN_KEY) || "";
      if (op === "set") sessionStorage.setItem(TOKEN_KEY, value);
      if (op === "del") sessionStorage.removeItem(TOKEN_KEY);
      localStorage.removeItem(TOKEN_KEY); // what older versions kept there
    } catch (_) {
      /* storage unavailable: the token lives for this page only */
    }
    return "";
  }
  let token = (() => {
    const params = new URLSearchParams(location.search);
    const fragment = new URLSearchParams(location.hash.replace(/^#/, ""));
    const from = fragment.has("token") ? fragment : params.has("token") ? params : null;
    if (from === null) return storage("get");
    const t = from.get("token") || "";
    if (t) storage("set", t);
    else storage("del");
    params.delete("token"); // keep it out of the address bar (and of screenshots)
    const rest = params.toString();
    const hash = from === fragment ? "" : location.hash;
    history.replaceState(null, "", location.pathname + (rest ? "?" + rest : "") + hash);
    return t;
  })();

  // -- HTTP -----------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, data, text) {
      const err = data && typeof data === "object" ? data.error || data : null;
      const message = (err && (err.message || (typeof err === "string" ? err : ""))) || text || `HTTP ${status}`;
      super(message);
      this.status = status;
      this.param = err && err.param;
    }
  }

  /** A control plane call: `path` is relative to /__mock__/. Resolves to {data, text}. */
  async function call(path, { method = "GET", body } = {}) {
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(new URL(path, BASE), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (_) {
      data = null;
    }
    if (response.status === 401 || response.status === 403) {
      askToken(response.status, data);
    }
    if (!response.ok) throw new ApiError(response.status, data, text.slice(0, 200));
    return { data, text };
  }
  const api = async (path, options) => (await call(path, options)).data;

  /** `acct_…` names an account by its id, anything else is a bearer token. */
  function who(value) {
    const v = (value || "").trim();
    if (!v) return {};
    return v.startsWith("acct_") ? { account: v } : { token: v };
  }

  // The account id of a token (acct_ + sha256[:16]), to filter client-side when the server did not.
  const accountIds = new Map();
  async function accountIdOf(value) {
    const v = (value || "").trim();
    if (!v) return "";
    if (v.startsWith("acct_")) return v;
    if (accountIds.has(v)) return accountIds.get(v);
    let id = null; // unknown: crypto.subtle needs a secure context (localhost is one)
    if (window.crypto && crypto.subtle) {
      const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(v));
      id = "acct_" + Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("").slice(0, 16);
    }
    accountIds.set(v, id);
    return id;
  }

  // -- banner, liveness and the clock pill -------------------------------------------------------

  function banner(text, withTokenForm = false) {
    const el = $("#banner");
    if (!text) {
      el.hidden = true;
      return;
    }
    $("#banner-text").textContent = text;
    $("#token-form").hidden = !withTokenForm;
    el.hidden = false;
  }
  let needsToken = false;
  function askToken(status) {
    needsToken = true;
    banner(
      token
        ? `The control plane refused the token (${status}). Enter another one:`
        : "The control plane needs a token (Authorization: Bearer …). Enter it, or open the page with #token=…",
      true,
    );
  }
  $("#token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    token = $("#token-input").value.trim();
    if (token) storage("set", token);
    else storage("del");
    needsToken = false;
    banner("");
    refresh();
  });

  function setLive(ok, error) {
    for (const el of $$(".live")) el.classList.toggle("stale", !ok);
    $("#clock-dot").classList.toggle("down", !ok);
    if (ok) {
      if (!needsToken) banner("");
    } else if (!needsToken) {
      banner(`Cannot reach the control plane: ${error && error.message ? error.message : error}`);
    }
  }

  let clock = { now: Date.now() / 1000, frozen: false };
  async function loadClock() {
    clock = await api("clock");
    $("#clock-text").textContent = `${dateTime(clock.now)} · ${clock.frozen ? "frozen" : "running"}`;
    $("#clock-dot").classList.toggle("frozen", !!clock.frozen);
    if (view === "steering") renderClock();
  }

  // -- pager ----------------------------------------------------------------------------------

  function renderPager(el, state, total, onChange) {
    const pages = Math.max(1, Math.ceil(total / state.size));
    if (state.page >= pages) state.page = pages - 1;
    const from = total ? state.page * state.size + 1 : 0;
    const to = Math.min(total, (state.page + 1) * state.size);
    const html =
      `<span class="range">${nfInt.format(from)}–${nfInt.format(to)} of ${nfInt.format(total)}</span>` +
      `<button type="button" class="ghost small" data-go="first" ${state.page === 0 ? "disabled" : ""}>« First</button>` +
      `<button type="button" class="ghost small" data-go="prev" ${state.page === 0 ? "disabled" : ""}>‹ Prev</button>` +
      `<span>page ${nfInt.format(state.page + 1)} / ${nfInt.format(pages)}</span>` +
      `<button type="button" class="ghost small" data-go="next" ${state.page >= pages - 1 ? "disabled" : ""}>Next ›</button>` +
      `<button type="button" class="ghost small" data-go="last" ${state.page >= pages - 1 ? "disabled" : ""}>Last »</button>` +
      `<label>per page <select data-size>${PAGE_SIZES.map(
        (n) => `<option ${n === state.size ? "selected" : ""}>${n}</option>`,
      ).join("")}</select></label>`;
    if (el.dataset.html !== html) {
      el.innerHTML = html;
      el.dataset.html = html;
    }
    el.onclick = (ev) => {
      const go = ev.target.closest("[data-go]");
      if (!go || go.disabled) return;
      const page = { first: 0, prev: state.page - 1, next: state.page + 1, last: pages - 1 }[go.dataset.go];
      state.page = Math.max(0, Math.min(pages - 1, page));
      onChange();
    };
    el.onchange = (ev) => {
      if (!ev.target.matches("[data-size]")) return;
      state.page = 0;
      state.size = Number(ev.target.value);
      onChange();
    };
  }

  function setHtml(el, html) {
    if (el.dataset.html === html) return false;
    el.innerHTML = html;
    el.dataset.html = html;
    return true;
  }

  const knownAccounts = new Set();
  function noteAccounts(names) {
    let added = false;
    for (const n of names) {
      if (n && !knownAccounts.has(n)) {
        knownAccounts.add(n);
        added = true;
      }
    }
    if (added) {
      $("#accounts-list").innerHTML = Array.from(knownAccounts)
        .sort()
        .map((n) => `<option value="${esc(n)}">`)
        .join("");
    }
  }

  // -- Tasks ----------------------------------------------------------------------------------

  const tasks = { page: 0, size: 50, status: "", account: "", total: 0, serverPaged: null, measured: false };
  window.dashboardTimings = null; // set after the first render of the task list (bench/dashboard.py)

  function progressBar(status, progress) {
    const p = Math.max(0, Math.min(100, Number(progress) || 0));
    return (
      `<div class="bar" title="${p}%"><div class="track"><div class="fill ${esc(status)}" style="width:${p}%"></div></div>` +
      `<span class="pct">${p}%</span></div>`
    );
  }

  function taskRow(t) {
    const r = t.record || {};
    const v = t.view || {};
    const status = v.status || "";
    const isVideo = r.action === "VIDEO";
    const batch = isVideo ? r.clips : "—";
    const refunded = status === "FAILURE" && r.charge;
    const charge = refunded
      ? `<s>${credits(r.charge)}</s> <span class="muted">refunded</span>`
      : credits(r.charge);
    return (
      `<tr class="clickable" data-id="${esc(r.id)}" data-status="${esc(status)}" data-progress="${esc(v.progress)}">` +
      `<td title="${esc(isoTime(r.created_at))}">${clockTime(r.created_at)} <span class="muted">${ago(r.created_at, clock.now)}</span></td>` +
      `<td><a class="id" href="#task/${encodeURIComponent(r.id)}">${esc(r.id)}</a></td>` +
      `<td class="id">${esc(r.account)}</td>` +
      `<td>${esc(r.action)} <span class="muted">${esc(r.mode || "")}</span></td>` +
      `<td class="id">${esc(r.video_type || "—")}</td>` +
      `<td class="num">${esc(batch)}</td>` +
      `<td><span class="badge ${esc(status)}">${esc(status)}</span></td>` +
      `<td class="progress-col">${progressBar(status, v.progress)}</td>` +
      `<td class="num" title="${esc(r.price_key)}">${credits(r.unit_price)}</td>` +
      `<td class="num">${charge}</td>` +
      `</tr>`
    );
  }

  async function loadTasks() {
    const first = !tasks.measured;
    const t0 = performance.now();
    const filter = who(tasks.account);
    const offset = tasks.page * tasks.size;
    const { data } = await call(
      "tasks" + qs({ limit: tasks.size, offset, order: "desc", status: tasks.status, ...filter }),
    );
    const t1 = performance.now();
    let rows = (data && data.tasks) || [];
    if (typeof data.total === "number") {
      tasks.serverPaged = true;
      tasks.total = data.total;
      if (rows.length > tasks.size) rows = rows.slice(0, tasks.size);
    } else {
      // A server without paging answers every task, oldest first: filter, sort and slice here.
      tasks.serverPaged = false;
      const acct = filter.token ? await accountIdOf(filter.token) : filter.account;
      if (tasks.status) rows = rows.filter((t) => t.view && t.view.status === tasks.status);
      if (acct) rows = rows.filter((t) => t.record && t.record.account === acct);
      rows = rows.slice().reverse().sort((a, b) => b.record.created_at - a.record.created_at); // stable: ties stay newest first
      tasks.total = rows.length;
      rows = rows.slice(offset, offset + tasks.size);
    }
    noteAccounts(rows.map((t) => t.record && t.record.account));
    renderTasks(rows);
    if (first) {
      document.body.offsetHeight; // eslint-disable-line no-unused-expressions -- force layout into the figure
      const t2 = performance.now();
      tasks.measured = true;
      window.dashboardTimings = {
        fetch_ms: t1 - t0,
        render_ms: t2 - t1,
        first_page_ms: t2 - t0,
        since_navigation_ms: t2,
        rows: rows.length,
        total: tasks.total,
        server_paged: tasks.serverPaged,
      };
      document.documentElement.dataset.tasksRendered = "1";
    }
  }

  function renderTasks(rows) {
    const body = $("#tasks-body");
    setHtml(body, rows.map(taskRow).join(""));
    $("#tasks-empty").hidden = rows.length > 0 || tasks.total > 0;
    renderPager($("#tasks-pager"), tasks, tasks.total, refresh);
  }

  $("#tasks-body").addEventListener("click", (ev) => {
    if (ev.target.closest("a")) return;
    const tr = ev.target.closest("tr[data-id]");
    if (tr) location.hash = "#task/" + encodeURIComponent(tr.dataset.id);
  });
  $("#tasks-status").addEventListener("change", (ev) => {
    tasks.status = ev.target.value;
    tasks.page = 0;
    refresh();
  });
  $("#tasks-account").addEventListener(
    "input",
    debounce((ev) => {
      tasks.account = ev.target.value.trim();
      tasks.page = 0;
      refresh();
    }, 250),
  );

  // -- a task's detail --------------------------------------------------------------------------

  const detail = { id: null, resultsKey: null };

  function kv(pairs) {
    return (
      `<dl class="kv">` +
      pairs
        .filter(([, v]) => v !== undefined)
        .map(([k, v]) => `<dt>${esc(k)}</dt><dd>${v === null || v === "" ? '<span class="muted">—</span>' : v}</dd>`)
        .join("") +
      `</dl>`
    );
  }
  const plain = (v) => (v === null || v === undefined || v === "" ? null : typeof v === "object" ? `<code>${esc(JSON.stringify(v))}</code>` : esc(v));

  function detailSkeleton(id) {
    return (
      `<div class="detail-head"><a href="#tasks">← All tasks</a><h1>${esc(id)}</h1><span id="d-badge"></span><span class="spacer"></span><span class="live">live</span></div>` +
      `<div class="two"><div class="card"><h2>Task</h2><div id="d-summary"></div></div>` +
      `<div class="card"><h2>Timeline</h2><div id="d-timeline"></div></div></div>` +
      `<div class="card"><h2>Effective settings</h2><div class="two" id="d-settings"></div></div>` +
      `<div class="card"><h2>Results</h2><div id="d-results"></div></div>`
    );
  }

  async function loadDetail() {
    const root = $("#task-detail");
    if (root.dataset.id !== detail.id) {
      root.innerHTML = detailSkeleton(detail.id);
      root.dataset.id = detail.id;
      detail.resultsKey = null;
    }
    let data;
    try {
      data = await api("tasks/" + encodeURIComponent(detail.id));
    } catch (err) {
      if (err.status === 404) {
        setHtml($("#d-summary"), `<p class="muted">No such task (the server may have been reset).</p>`);
        return;
      }
      throw err;
    }
    // Polls are counted from the journal (the record counts them only in poll-count mode).
    const id = detail.id;
    const paths = [`/v1/tasks/${id}`, `/v1/midjourney/${id}`];
    const seen = await Promise.all(paths.map((p) => api("requests" + qs({ path: p })).catch(() => null)));
    let journalPolls = null;
    if (seen.every(Boolean)) {
      journalPolls = 0;
      for (const answer of seen) journalPolls += (answer.requests || []).filter((e) => paths.includes(e.path)).length;
    }
    renderDetail(data, journalPolls);
  }

  function renderDetail(data, journalPolls) {
    const r = data.record || {};
    const v = data.view || {};
    const status = v.status || "";
    setHtml($("#d-badge"), `<span class="badge ${esc(status)}" id="d-status">${esc(status)}</span>`);
    setHtml(
      $("#d-summary"),
      progressBar(status, v.progress) +
        "<br>" +
        kv([
          ["Account", `<span class="id">${esc(r.account)}</span>`],
          ["Action", `${esc(r.action)} <span class="muted">${esc(r.mode || "")}</span>`],
          ["Prompt", plain(r.prompt)],
          ["Outcome", plain(r.outcome)],
          r.fail_reason || status === "FAILURE" ? ["Fail reason", plain(r.fail_reason)] : ["", undefined],
        ]),
    );
    const start = r.created_at;
    const step = (label, t, done) =>
      `<li class="${done ? "done" : ""}"><div>${label}</div><div class="t">${done ? clockTime(t) : "—"}</div>` +
      `<div class="muted">${done && t !== start ? "+" + seconds(t - start) : done ? esc(dateTime(t).slice(0, 10)) : ""}</div></li>`;
    setHtml(
      $("#d-timeline"),
      `<ol class="timeline">` +
        step("Submitted", start, typeof start === "number") +
        step("Started", v.started_at, typeof v.started_at === "number") +
        step("Finished", v.finished_at, typeof v.finished_at === "number") +
        `</ol><br>` +
        kv([
          ["Duration", seconds(r.duration)],
          ["Poll count", `<span id="d-poll-count">${esc(Math.max(r.polls || 0, journalPolls || 0))}</span>` +
            (journalPolls !== null ? ' <span class="muted">(from the journal)</span>' : "")],
          ["Finishes after polls", plain(r.finish_after_polls)],
          ["Settled at", typeof r.settled_at === "number" ? clockTime(r.settled_at) : null],
        ]),
    );
    const params = r.params || {};
    setHtml(
      $("#d-settings"),
      kv([
        ["Video type", plain(r.video_type)],
        [r.action === "IMAGINE" ? "Images" : "Batch size (clips)", plain(r.clips)],
        ["Price key", plain(r.price_key)],
        ["Quantity", plain(r.quantity)],
        ["Unit price", credits(r.unit_price) + " credits"],
        ["Charge", credits(r.charge) + " credits" + (status === "FAILURE" && r.charge ? " (refunded)" : "")],
      ]) + kv(Object.keys(params).map((k) => [k, plain(params[k])])),
    );
    // Results are drawn once per final state, so <video> elements are never re-created by the poll.
    const key = `${r.id}:${status}`;
    if (key === detail.resultsKey) return;
    if (!FINAL.has(status) && detail.resultsKey && detail.resultsKey.endsWith(":pending")) return;
    detail.resultsKey = FINAL.has(status) ? key : `${r.id}:pending`;
    $("#d-results").innerHTML = resultsHtml(r, status);
  }

  function resultsHtml(r, status) {
    const id = encodeURIComponent(r.id);
    const url = (name) => new URL(`${id}/${name}`, MEDIA).pathname;
    if (status === "FAILURE") {
      return `<div class="error-box"><b>FAILURE</b>: ${esc(r.fail_reason || "no reason given")}. No result files.</div>`;
    }
    if (status !== "SUCCESS") return `<p class="muted">The results appear here when the task succeeds.</p>`;
    if (r.action === "IMAGINE") {
      const imgs = [0, 1, 2, 3]
        .map((n) => `<figure><img src="${url(n + ".png")}" alt="image ${n}" loading="lazy"><figcaption><a href="${url(n + ".png")}">${n}.png</a></figcaption></figure>`)
        .join("");
      return (
        `<div class="media grid4"><figure class="grid-img"><img src="${url("grid.png")}" alt="grid"><figcaption><a href="${url("grid.png")}">grid.png</a></figcaption></figure>` +
        imgs +
        `</div>`
      );
    }
    const clips = [];
    for (let n = 0; n < (r.clips || 0); n++) {
      clips.push(
        `<figure><video controls muted playsinline preload="metadata" src="${url(n + ".mp4")}"></video>` +
          `<figcaption><a href="${url(n + ".mp4")}">${n}.mp4</a> · ${esc(r.video_type || "")}</figcaption></figure>`,
      );
    }
    return `<div class="media">${clips.join("")}</div>`;
  }

  // -- Requests -------------------------------------------------------------------------------

  const reqs = {
    page: 0,
    size: 50,
    path: "",
    status: "",
    account: "",
    entries: [],
    maxSeq: 0,
    key: null,
    signature: "",
    polls: 0,
    expanded: new Set(),
    version: 0,
    drawn: null,
  };

  function statusMatches(code, filter) {
    if (!filter) return true;
    if (filter === "2xx") return code >= 200 && code < 300;
    if (filter === "err") return code >= 400;
    if (filter === "4xx") return code >= 400 && code < 500;
    if (filter === "5xx") return code >= 500;
    return code === Number(filter);
  }

  async function loadRequests() {
    const key = JSON.stringify([reqs.path, reqs.status, reqs.account]);
    const filter = who(reqs.account);
    const server = { path: reqs.path, status: /^\d+$/.test(reqs.status) ? reqs.status : "", ...filter };
    const acct = filter.token ? await accountIdOf(filter.token) : filter.account;
    // Filter here too: a server that ignores a parameter still gets the right rows.
    const keep = (e) =>
      (!reqs.path || String(e.path).startsWith(reqs.path)) &&
      statusMatches(e.status, reqs.status) &&
      (!acct || e.account === acct);
    const newFilter = key !== reqs.key;
    // A full read when the filter changed, and every 10th poll: entries that a reset removed go away.
    if (newFilter || ++reqs.polls % 10 === 0) {
      const all = ((await api("requests" + qs({ ...server, limit: JOURNAL_CAP }))).requests || []).sort((a, b) => a.seq - b.seq);
      const entries = all.filter(keep);
      const signature = `${entries.length}:${entries.length ? entries[0].seq + ":" + entries[entries.length - 1].seq : ""}`;
      if (newFilter || signature !== reqs.signature) {
        reqs.entries = entries;
        reqs.version++;
      }
      if (newFilter) reqs.page = 0;
      reqs.key = key;
      reqs.signature = signature;
      reqs.maxSeq = all.length ? all[all.length - 1].seq : 0;
      noteAccounts(entries.map((e) => e.account));
      return renderRequests();
    }
    let fresh = (await api("requests" + qs({ ...server, since: reqs.maxSeq, limit: JOURNAL_CAP }))).requests || [];
    if (!fresh.length) {
      if (reqs.maxSeq > 0) {
        // Nothing new: was the journal emptied under us?
        const newest = (await api("requests?limit=1")).requests || [];
        if (!newest.length || newest[newest.length - 1].seq < reqs.maxSeq) {
          reqs.key = null;
          return loadRequests();
        }
      }
      return renderRequests();
    }
    fresh.sort((a, b) => a.seq - b.seq);
    reqs.maxSeq = Math.max(reqs.maxSeq, fresh[fresh.length - 1].seq);
    fresh = fresh.filter(keep);
    if (fresh.length) {
      reqs.entries = reqs.entries.concat(fresh);
      if (reqs.entries.length > JOURNAL_CAP) reqs.entries = reqs.entries.slice(-JOURNAL_CAP);
      const first = reqs.entries[0].seq;
      reqs.signature = `${reqs.entries.length}:${first}:${reqs.entries[reqs.entries.length - 1].seq}`;
      reqs.version++;
      noteAccounts(fresh.map((e) => e.account));
    }
    return renderRequests();
  }

  function errorOf(e) {
    let err = e.error;
    if (!err) return null;
    if (typeof err === "string") return { message: err };
    if (err.error && typeof err.error === "object") err = err.error;
    return err;
  }

  function whyHtml(e) {
    const err = errorOf(e);
    if (err) {
      const rule = err.rule ? ` <code>${esc(err.rule)}</code>` : "";
      const field = err.param ? ` <code>${esc(err.param)}</code>` : "";
      return `<span class="why" title="${esc(err.message)}">${field}${rule} ${esc(err.message || err.type || "")}</span>`;
    }
    if (e.scenario) return `<span class="${e.status >= 400 ? "why" : "muted"}">fault <code>${esc(e.scenario)}</code></span>`;
    if (e.replayed) return `<span class="muted">idempotent replay</span>`;
    if (e.status >= 400 && e.endpoint === undefined && e.account === undefined) return `<span class="why">refused before the route</span>`;
    return "";
  }

  const HIDDEN_FACTS = new Set(["body", "headers", "error"]);
  function expandedHtml(e) {
    const err = errorOf(e);
    const errBox = err
      ? `<div class="error-box"><b>Refused ${esc(e.status)}</b>${err.param ? ` · field <code>${esc(err.param)}</code>` : ""}` +
        `${err.rule ? ` · rule <code>${esc(err.rule)}</code>` : ""}${err.type ? ` · ${esc(err.type)}` : ""}<br>${esc(err.message || "")}</div>`
      : e.status >= 400
        ? `<div class="error-box"><b>Refused ${esc(e.status)}</b>${e.scenario ? ` by the fault <code>${esc(e.scenario)}</code>` : ""}</div>`
        : "";
    const facts = Object.keys(e)
      .filter((k) => !HIDDEN_FACTS.has(k))
      .map((k) => {
        let v = e[k];
        if (k === "time" || k === "wall_time") v = `${esc(isoTime(v))} <span class="muted">(${esc(v)})</span>`;
        else if (k === "task_id") v = `<a class="id" href="#task/${encodeURIComponent(v)}">${esc(v)}</a>`;
        else v = plain(v);
        return [k, v];
      });
    const body =
      e.body === undefined
        ? `<p class="muted">${e.body_bytes ? `${esc(e.body_bytes)} bytes, not JSON` : "no body"}</p>`
        : `<pre class="json">${json(e.body)}</pre>`;
    return (
      `<div class="facts">${errBox}` +
      `<div><h3>Request body</h3>${body}<h3 style="margin-top:12px">Headers</h3><pre class="json">${json(e.headers || {})}</pre></div>` +
      `<div><h3>Answer facts</h3>${kv(facts)}</div></div>`
    );
  }

  function requestRow(e) {
    const refused = e.status >= 400;
    const open = reqs.expanded.has(e.seq);
    const path = esc(e.path) + (e.query ? `<span class="muted">?${esc(String(e.query).slice(0, 60))}</span>` : "");
    return (
      `<tr class="clickable${refused ? " refused" : ""}" data-seq="${esc(e.seq)}" data-status="${esc(e.status)}" aria-expanded="${open}">` +
      `<td class="num">${esc(e.seq)}</td>` +
      `<td title="${esc(isoTime(e.time))}">${clockTime(e.time)}</td>` +
      `<td>${esc(e.method)}</td>` +
      `<td class="id">${path}</td>` +
      `<td><span class="badge ${statusClass(e.status)}">${esc(e.status)}</span></td>` +
      `<td class="id">${esc(e.account || "")}</td>` +
      `<td>${e.task_id ? `<a class="id" href="#task/${encodeURIComponent(e.task_id)}">${esc(e.task_id)}</a>` : ""}</td>` +
      `<td>${whyHtml(e)}</td>` +
      `<td class="num">${typeof e.duration_ms === "number" ? e.duration_ms.toFixed(1) : ""}</td>` +
      `</tr>` +
      (open ? `<tr class="expanded-row" data-for="${esc(e.seq)}"><td colspan="9">${expandedHtml(e)}</td></tr>` : "")
    );
  }

  function renderRequests() {
    const total = reqs.entries.length;
    const pages = Math.max(1, Math.ceil(total / reqs.size));
    if (reqs.page >= pages) reqs.page = pages - 1;
    const drawn = `${reqs.version}:${reqs.page}:${reqs.size}:${Array.from(reqs.expanded).join(",")}`;
    if (drawn !== reqs.drawn) {
      const end = total - reqs.page * reqs.size; // newest first
      const slice = reqs.entries.slice(Math.max(0, end - reqs.size), end).reverse();
      $("#req-body").innerHTML = slice.map(requestRow).join("");
      reqs.drawn = drawn;
    }
    $("#req-empty").hidden = total > 0;
    renderPager($("#req-pager"), reqs, total, () => {
      renderRequests();
    });
  }

  $("#req-body").addEventListener("click", (ev) => {
    if (ev.target.closest("a")) return;
    const tr = ev.target.closest("tr[data-seq]");
    if (!tr) return;
    const seq = Number(tr.dataset.seq);
    if (reqs.expanded.has(seq)) reqs.expanded.delete(seq);
    else reqs.expanded.add(seq);
    renderRequests();
  });
  const requestFilter = () => {
    reqs.path = $("#req-path").value.trim();
    reqs.status = $("#req-status").value;
    reqs.account = $("#req-account").value.trim();
    refresh();
  };
  $("#req-path").addEventListener("input", debounce(requestFilter, 250));
  $("#req-account").addEventListener("input", debounce(requestFilter, 250));
  $("#req-status").addEventListener("change", requestFilter);

  // -- Costs ----------------------------------------------------------------------------------

  const costs = { text: null, entries: { page: 0, size: 25 }, ledger: null };

  async function loadCosts() {
    const { data, text } = await call("ledger");
    if (text === costs.text) return;
    costs.text = text;
    costs.ledger = data;
    renderCosts();
  }

  // What each key of a shared account (--shared-accounts) spent of it: what GET /v1/balance answers it.
  function keyUse(a) {
    const keys = Object.entries(a.by_key || {});
    if (!keys.length) return "";
    const parts = keys.map(([k, amount]) => `<span data-key-id="${esc(k)}" data-value="${esc(amount)}">${esc(k)}: ${credits(amount)} cr</span>`);
    return `<div class="muted small" data-keys>${parts.join(" · ")}</div>`;
  }

  function renderCosts() {
    const L = costs.ledger || { accounts: {}, entries: [], total_spent: 0 };
    const rate = typeof L.usd_per_credit === "number" ? L.usd_per_credit : USD_PER_CREDIT;
    $("#usd-rate").textContent = `1 credit = ${usd(rate)}${typeof L.usd_per_credit === "number" ? "" : " (default)"}`;
    const accounts = Object.entries(L.accounts || {});
    noteAccounts(accounts.map(([name]) => name));
    let tasksN = 0;
    let charged = 0;
    let refunded = 0;
    for (const [, a] of accounts) {
      tasksN += a.tasks || 0;
      charged += a.charged || 0;
      refunded += a.refunded || 0;
    }
    const stat = (id, label, value, sub) =>
      `<div class="stat" id="${id}"><div class="label">${label}</div><div class="value">${value}</div><div class="sub">${sub}</div></div>`;
    setHtml(
      $("#cost-cards"),
      stat("stat-total", "Total spent", `<span data-credits="${esc(L.total_spent)}">${credits(L.total_spent)}</span> cr`, `<span data-usd>${usd(L.total_spent * rate)}</span>`) +
        stat("stat-charged", "Charged", `${credits(charged)} cr`, usd(charged * rate)) +
        stat("stat-refunded", "Refunded", `${credits(refunded)} cr`, usd(refunded * rate)) +
        stat("stat-tasks", "Tasks", nfInt.format(tasksN), `${accounts.length} account${accounts.length === 1 ? "" : "s"}`),
    );
    const cell = (field, value, text) => `<td class="num" data-field="${field}" data-value="${esc(value)}">${text}</td>`;
    setHtml(
      $("#cost-accounts tbody"),
      accounts
        .map(
          ([name, a]) =>
            `<tr data-account="${esc(name)}"><td class="id">${esc(name)}${keyUse(a)}</td>` +
            cell("tasks", a.tasks, nfInt.format(a.tasks || 0)) +
            cell("charged", a.charged, credits(a.charged)) +
            cell("refunded", a.refunded, credits(a.refunded)) +
            cell("spent", a.spent, credits(a.spent)) +
            cell("usd", a.spent * rate, usd(a.spent * rate)) +
            cell("balance", a.balance, a.balance === null || a.balance === undefined ? '<span class="muted">unlimited</span>' : credits(a.balance)) +
            cell("remaining", a.remaining, a.remaining === null || a.remaining === undefined ? '<span class="muted">—</span>' : credits(a.remaining)) +
            `<td><button type="button" class="ghost small" data-balance="${esc(name)}">Set balance</button></td></tr>`,
        )
        .join("") || `<tr><td colspan="9" class="muted">No account has spent anything yet.</td></tr>`,
    );
    const byKey = {};
    const rows = [];
    for (const [name, a] of accounts) {
      for (const [k, amount] of Object.entries(a.by_price_key || {})) {
        byKey[k] = (byKey[k] || 0) + amount;
        rows.push(
          `<tr data-account="${esc(name)}" data-key="${esc(k)}"><td class="id">${esc(name)}</td><td class="id">${esc(k)}</td>` +
            cell("credits", amount, credits(amount)) +
            cell("usd", amount * rate, usd(amount * rate)) +
            `</tr>`,
        );
      }
    }
    for (const [k, amount] of Object.entries(byKey).sort()) {
      rows.push(
        `<tr class="total" data-account="*" data-key="${esc(k)}"><td class="muted">all accounts</td><td class="id"><b>${esc(k)}</b></td>` +
          cell("credits", amount, `<b>${credits(amount)}</b>`) +
          cell("usd", amount * rate, `<b>${usd(amount * rate)}</b>`) +
          `</tr>`,
      );
    }
    setHtml($("#cost-keys tbody"), rows.join("") || `<tr><td colspan="4" class="muted">Nothing charged yet.</td></tr>`);
    setHtml(
      $("#cost-prices tbody"),
      Object.entries(L.prices || {})
        .map(([k, p]) => `<tr><td class="id">${esc(k)}</td>${cell("unit", p, credits(p))}${cell("usd", p * rate, usd(p * rate))}</tr>`)
        .join(""),
    );
    renderEntries();
  }

  function renderEntries() {
    const entries = (costs.ledger && costs.ledger.entries) || [];
    const st = costs.entries;
    const total = entries.length;
    const pages = Math.max(1, Math.ceil(total / st.size));
    if (st.page >= pages) st.page = pages - 1;
    const end = total - st.page * st.size;
    const slice = entries.slice(Math.max(0, end - st.size), end).reverse();
    setHtml(
      $("#cost-entries tbody"),
      slice
        .map(
          (e) =>
            `<tr><td title="${esc(isoTime(e.at))}">${clockTime(e.at)}</td><td class="id">${esc(e.account)}</td>` +
            `<td><a class="id" href="#task/${encodeURIComponent(e.task_id)}">${esc(e.task_id)}</a></td>` +
            `<td><span class="badge ${e.kind === "refund" ? "s4" : ""}">${esc(e.kind)}</span></td><td class="id">${esc(e.price_key)}</td>` +
            `<td class="num">${esc(e.quantity)}</td><td class="num">${credits(e.amount)}</td></tr>`,
        )
        .join("") || `<tr><td colspan="7" class="muted">No entry.</td></tr>`,
    );
    renderPager($("#entries-pager"), st, total, renderEntries);
  }

  $("#cost-accounts").addEventListener("click", (ev) => {
    const b = ev.target.closest("[data-balance]");
    if (!b) return;
    const form = $("#balance-form");
    form.elements.who.value = b.dataset.balance;
    form.elements.balance.focus();
  });

  function message(el, text, kind) {
    el.textContent = text;
    el.className = "form-msg" + (kind ? " " + kind : "");
  }

  $("#balance-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = ev.target;
    const raw = form.elements.balance.value.trim();
    const body = { ...who(form.elements.who.value), balance: raw === "" ? null : Number(raw) };
    try {
      const answer = await api("balances", { method: "POST", body });
      message($("#balance-msg"), `${answer.account}: ${raw === "" ? "unlimited" : credits(Number(raw)) + " credits"}`, "ok");
      costs.text = null;
      refresh();
    } catch (err) {
      message($("#balance-msg"), err.message, "err");
    }
  });

  // -- Steering -------------------------------------------------------------------------------

  const steer = { text: null, catalogue: [], rules: [] };

  function renderClock() {
    $("#clock-now").textContent = dateTime(clock.now);
    $("#clock-unix").textContent = `${clock.now.toFixed(3)} · ${isoTime(clock.now)}`;
    $("#clock-unix").dataset.now = String(clock.now);
    const state = $("#clock-state");
    state.textContent = clock.frozen ? "frozen" : "running";
    state.className = "badge " + (clock.frozen ? "frozen" : "running");
    $("#clock-toggle").textContent = clock.frozen ? "Unfreeze" : "Freeze";
    $("#clock-toggle").dataset.frozen = clock.frozen ? "1" : "0";
  }

  async function moveClock(body) {
    try {
      clock = await api("clock", { method: "POST", body });
      message($("#clock-msg"), "");
      refresh();
    } catch (err) {
      message($("#clock-msg"), err.message, "err");
    }
  }
  $("#clock-toggle").addEventListener("click", () => moveClock({ freeze: !clock.frozen }));
  $("#advance-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const n = Number($("#advance-seconds").value);
    if (n >= 0) moveClock({ advance: n });
  });
  for (const b of $$("[data-advance]")) b.addEventListener("click", () => moveClock({ advance: Number(b.dataset.advance) }));

  async function loadScenarios() {
    const { data, text } = await call("scenarios");
    if (text === steer.text) return;
    steer.text = text;
    steer.catalogue = data.catalogue || [];
    steer.rules = data.rules || [];
    renderScenarios();
  }

  function renderScenarios() {
    const select = $("#rule-scenario");
    const names = steer.catalogue.map((k) => k.name);
    if (select.dataset.names !== names.join(",")) {
      const current = select.value;
      select.innerHTML = steer.catalogue
        .map((k) => `<option value="${esc(k.name)}">${esc(k.name)}${k.task ? " (task)" : ""}</option>`)
        .join("");
      select.dataset.names = names.join(",");
      if (names.includes(current)) select.value = current;
      renderParams();
    }
    const rows = steer.rules.map((r) => {
      const params = Object.entries(r.params || {}).map(([k, v]) => `${k}=${v}`).join("; ");
      const times = r.times === null || r.times === undefined ? "always" : typeof r.fired === "number" ? `${r.fired} / ${r.times}` : String(r.times);
      return (
        `<tr data-rule="${esc(r.id)}"><td class="id">${esc(r.id)}</td><td><b>${esc(r.scenario)}</b></td>` +
        `<td class="id">${esc(params)}</td><td>${esc(r.endpoint)}</td><td class="id">${esc(r.account || "any")}</td>` +
        `<td class="id">${r.fields && Object.keys(r.fields).length ? esc(JSON.stringify(r.fields)) : ""}</td>` +
        `<td class="num">${esc(times)}</td><td class="num">${esc(r.probability)}</td>` +
        `<td><button type="button" class="ghost small danger-text" data-delete="${esc(r.id)}">Delete</button></td></tr>`
      );
    });
    setHtml($("#rules-table tbody"), rows.join(""));
    $("#rules-empty").hidden = rows.length > 0;
    $("#rules-clear").hidden = rows.length === 0;
  }

  function renderParams() {
    const kind = steer.catalogue.find((k) => k.name === $("#rule-scenario").value);
    const params = (kind && kind.params) || {};
    $("#rule-params").innerHTML = Object.entries(params)
      .map(([k, help]) => `<label>${esc(k)} <input data-param="${esc(k)}" placeholder="${esc(help)}" title="${esc(help)}" autocomplete="off"></label>`)
      .join("");
    $("#rule-summary").textContent = kind ? kind.summary : "";
  }
  $("#rule-scenario").addEventListener("change", renderParams);

  $("#rule-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = ev.target.elements;
    const body = { scenario: f.scenario.value, endpoint: f.endpoint.value, ...who(f.who.value) };
    const probability = f.probability.value.trim();
    if (probability !== "") body.probability = Number(probability);
    if (f.times.value.trim() !== "") body.times = Number(f.times.value);
    const params = {};
    for (const input of $$("[data-param]", ev.target)) {
      const v = input.value.trim();
      if (v !== "") params[input.dataset.param] = /^-?\d+(\.\d+)?$/.test(v) ? Number(v) : v;
    }
    if (Object.keys(params).length) body.params = params;
    if (f.fields.value.trim()) {
      try {
        body.fields = JSON.parse(f.fields.value);
      } catch (err) {
        message($("#rule-msg"), "Body fields: " + err.message, "err");
        return;
      }
    }
    try {
      const rule = await api("scenarios", { method: "POST", body });
      message($("#rule-msg"), `Added ${rule.id} (${rule.scenario} on ${rule.endpoint})`, "ok");
      steer.text = null;
      refresh();
    } catch (err) {
      message($("#rule-msg"), err.message + (err.param ? ` (${err.param})` : ""), "err");
    }
  });

  $("#rules-table").addEventListener("click", async (ev) => {
    const b = ev.target.closest("[data-delete]");
    if (!b) return;
    b.disabled = true;
    try {
      await api("scenarios/" + encodeURIComponent(b.dataset.delete), { method: "DELETE" });
    } catch (err) {
      message($("#rule-msg"), err.message, "err");
    }
    steer.text = null;
    refresh();
  });

  /** A destructive button asks once more in place (no modal dialog). */
  function confirmInPlace(button, label, action) {
    const original = button.textContent;
    let armed = null;
    button.addEventListener("click", async () => {
      if (!armed) {
        button.textContent = label;
        button.dataset.armed = "1";
        armed = setTimeout(() => {
          armed = null;
          button.textContent = original;
          delete button.dataset.armed;
        }, 4000);
        return;
      }
      clearTimeout(armed);
      armed = null;
      button.textContent = original;
      delete button.dataset.armed;
      await action();
    });
  }

  function forgetLocal() {
    reqs.key = null;
    reqs.expanded.clear();
    costs.text = null;
    steer.text = null;
    detail.resultsKey = null;
    tasks.page = 0;
  }

  confirmInPlace($("#rules-clear"), "Click again to delete every rule", async () => {
    try {
      await api("scenarios", { method: "DELETE" });
      message($("#rule-msg"), "Every rule deleted", "ok");
    } catch (err) {
      message($("#rule-msg"), err.message, "err");
    }
    steer.text = null;
    refresh();
  });
  confirmInPlace($("#reset-all"), "Click again to reset everything", async () => {
    try {
      await api("reset", { method: "POST", body: {} });
      message($("#reset-msg"), "Everything was reset", "ok");
    } catch (err) {
      message($("#reset-msg"), err.message, "err");
    }
    forgetLocal();
    refresh();
  });
  $("#reset-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const target = who(ev.target.elements.who.value);
    try {
      const answer = await api("reset", { method: "POST", body: target });
      message($("#reset-msg"), `${answer.reset} was reset`, "ok");
    } catch (err) {
      message($("#reset-msg"), err.message + (err.param ? ` (${err.param})` : ""), "err");
    }
    forgetLocal();
    refresh();
  });

  // -- routing and the poll loop -------------------------------------------------------------------

  let view = "tasks";

  function route() {
    const hash = decodeURIComponent(location.hash.replace(/^#/, ""));
    let tab = hash.split("/")[0] || "tasks";
    detail.id = null;
    if (tab === "task" && hash.slice(5)) {
      detail.id = hash.slice(5);
      tab = "tasks";
    }
    if (!["tasks", "requests", "costs", "steering"].includes(tab)) tab = "tasks";
    view = tab;
    for (const el of $$(".view")) el.hidden = el.dataset.view !== tab;
    for (const a of $$(".tabs a")) a.setAttribute("aria-selected", String(a.dataset.tab === tab));
    $("#tasks-list").hidden = !!detail.id;
    $("#task-detail").hidden = !detail.id;
    if (!detail.id) {
      $("#task-detail").innerHTML = "";
      delete $("#task-detail").dataset.id;
    }
    if (tab === "steering") renderClock();
    document.title = `mockserver · ${detail.id ? detail.id : tab}`;
    refresh();
  }
  window.addEventListener("hashchange", route);

  function loadView() {
    if (view === "tasks") return detail.id ? loadDetail() : loadTasks();
    if (view === "requests") return loadRequests();
    if (view === "costs") return loadCosts();
    if (view === "steering") return loadScenarios();
    return null;
  }

  let timer = null;
  let busy = false;
  let again = false;
  async function tick() {
    clearTimeout(timer);
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    const started = performance.now();
    try {
      if (!document.hidden) {
        await Promise.all([loadClock(), loadView()]);
        setLive(true);
      }
    } catch (err) {
      setLive(false, err);
    } finally {
      busy = false;
    }
    const spent = performance.now() - started;
    if (again) {
      again = false;
      timer = setTimeout(tick, 0);
    } else {
      timer = setTimeout(tick, Math.max(200, 1000 - spent, spent)); // once a second; slower if answers are slow
    }
  }
  const refresh = () => tick();
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) refresh();
  });

  // The accounts known to the ledger feed the account pickers (after the first page is drawn).
  setTimeout(() => {
    api("ledger")
      .then((L) => noteAccounts(Object.keys((L && L.accounts) || {})))
      .catch(() => {});
  }, 1500);
  route();
})();
