// fota-server web console: one page, views drawn from the URL fragment, data from /ui/api (same origin).
"use strict";
const state = { me: null, csrf: "", timers: [], source: null };
const $ = (sel, root = document) => root.querySelector(sel);
const main = () => $("#main");

function el(tag, attrs = {}, ...children) {
  const node = tag === "svg" || attrs.svg ? document.createElementNS("http://www.w3.org/2000/svg", tag)
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "svg" || v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  return node;
}
const svg = (tag, attrs = {}, ...c) => el(tag, { ...attrs, svg: true }, ...c);
const fmt = (t) => (t ? new Date(t).toLocaleString() : "—");
const bytes = (n) => (n >= 1048576 ? (n / 1048576).toFixed(1) + " MiB" : n >= 1024 ? (n / 1024).toFixed(1) + " KiB" : n + " B");

function showError(text) { $("#error").textContent = text || ""; }

async function api(method, path, body) {
  const init = { method, credentials: "same-origin", headers: {} };
  if (method !== "GET") init.headers["X-CSRF-Token"] = state.csrf;
  if (body instanceof FormData) init.body = body;
  else if (typeof body === "string") { init.body = body; init.headers["Content-Type"] = "text/plain"; }
  else if (body !== undefined) { init.body = JSON.stringify(body); init.headers["Content-Type"] = "application/json"; }
  const response = await fetch("/ui/api" + path, init);
  const data = await response.json().catch(() => ({}));
  if (response.status === 401 && path !== "/login") { state.me = null; location.hash = "#/login"; throw new Error("sign in"); }
  if (!response.ok) throw new Error((data.errorCode ? data.errorCode + ": " : "") + (data.errorMessage || response.status));
  return data;
}

function stopLive() {
  state.timers.forEach(clearInterval); state.timers = [];
  if (state.source) { state.source.close(); state.source = null; }
}

async function route() {
  stopLive(); showError("");
  const [view, arg] = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  if (!state.me && view !== "login") {
    try { const me = await api("GET", "/me"); state.me = me; state.csrf = me.csrfToken; }
    catch (e) { location.hash = "#/login"; return; }
  }
  $("#nav").hidden = $("#signout").hidden = !state.me;
  $("#who").textContent = state.me ? state.me.account : "";
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("on", a.dataset.view === view));
  const views = { login: viewLogin, fleet: viewFleet, device: viewDevice, firmware: viewFirmware,
    campaigns: viewCampaigns, campaign: viewCampaign, wizard: viewWizard };
  main().replaceChildren();
  try { await (views[view] || viewFleet)(arg); } catch (e) { showError(e.message); }
}

function viewLogin() {
  const user = el("input", { name: "username", placeholder: "user name", autocomplete: "username", required: true });
  const pass = el("input", { name: "password", type: "password", placeholder: "password", autocomplete: "current-password", required: true });
  const form = el("form", { class: "card login", onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      const me = await api("POST", "/login", { username: user.value, password: pass.value });
      state.me = me; state.csrf = me.csrfToken; location.hash = "#/fleet";
    } catch (e) { showError(e.message); }
  } }, el("h1", { text: "Sign in" }), user, pass, el("button", { class: "primary", type: "submit", text: "Sign in" }));
  main().append(form);
}

// ---------------------------------------------------------------- fleet
function countCards(c) {
  const card = (n, label, id) => el("div", { class: "count", "data-count": id }, el("b", { text: n }), el("span", { text: label }));
  return [card(c.total, "devices", "total"), card(c.registered, "LwM2M registered now", "registered"),
    ...Object.keys(c.byProtocol).map((p) => card(`${c.online[p] || 0} / ${c.byProtocol[p]}`, p + " online", p))];
}

async function viewFleet() {
  const counts = el("div", { class: "counts", id: "counts" });
  const fields = ["q:device id starts with", "protocol", "make", "model", "firmware", "cell", "state"];
  const inputs = {};
  const filters = el("form", { class: "filters", onsubmit: (ev) => { ev.preventDefault(); cursors.length = 0; load(""); } },
    fields.map((f) => {
      const [name, hint] = f.split(":");
      if (name === "protocol" || name === "state") {
        const opts = name === "protocol" ? ["", "LWM2M", "HTTP", "OMADM"] : ["", "online", "offline", "registered", "active", "suspend"];
        return (inputs[name] = el("select", { name }, opts.map((o) => el("option", { value: o, text: o || name }))));
      }
      return (inputs[name] = el("input", { name, placeholder: hint || name }));
    }), el("button", { type: "submit", text: "Filter" }));
  const body = el("tbody");
  const table = el("table", { id: "devices" }, el("thead", {}, el("tr", {}, ["Device", "Protocol", "Make / model",
    "Firmware", "Cell", "State", "Last seen"].map((h) => el("th", { text: h })))), body);
  const cursors = [];
  const info = el("span", { class: "muted" });
  const prev = el("button", { type: "button", text: "‹ Previous", onclick: () => { cursors.pop(); load(cursors.pop() || ""); } });
  const next = el("button", { type: "button", text: "Next ›" });
  async function load(after) {
    const q = new URLSearchParams({ limit: "50" });
    for (const [k, input] of Object.entries(inputs)) if (input.value) q.set(k, input.value);
    if (after) q.set("after", after);
    const page = await api("GET", "/devices?" + q);
    cursors.push(after);
    body.replaceChildren(...page.devices.map((d) => el("tr", {},
      el("td", {}, el("a", { href: "#/device/" + encodeURIComponent(d.deviceId), text: d.deviceId })),
      el("td", { text: d.protocol }), el("td", { text: `${d.make} ${d.model}` }), el("td", { text: d.firmware }),
      el("td", { text: d.cell || "—" }),
      el("td", { class: d.online ? "ok" : "muted", text: (d.registered ? "registered" : d.online ? "online" : "offline") + (d.line !== "active" ? " (" + d.line + ")" : "") }),
      el("td", { text: fmt(d.lastSeen) }))));
    info.textContent = page.devices.length ? "" : "No device matches.";
    prev.disabled = cursors.length < 2;
    next.disabled = !page.next;
    next.onclick = () => load(page.next);
  }
  const strangers = el("div", { id: "refused" });
  main().append(el("h1", { text: "Fleet" }), counts, filters, table, el("div", { class: "pager" }, prev, next, info), strangers);
  api("GET", "/refused").then((r) => {
    if (!r.visible) return;
    strangers.append(el("h2", { text: `Devices of no account that tried to connect (refused; this server process, the last ${r.limit})` }),
      r.devices.length ? el("table", {}, el("thead", {}, el("tr", {}, ["Device", "Protocol", "From", "Why", "Tries", "Last"].map((h) => el("th", { text: h })))),
        el("tbody", {}, r.devices.map((d) => el("tr", {}, el("td", { text: d.deviceId }), el("td", { text: d.protocol }), el("td", { text: d.peer }),
          el("td", { class: "wrap", text: d.why }), el("td", { text: d.count }), el("td", { text: fmt(d.lastAt) })))))
        : el("p", { class: "muted", text: "None lately." }));
  }).catch((e) => showError(e.message));
  const source = (state.source = new EventSource("/ui/api/events"));
  source.addEventListener("counts", (ev) => counts.replaceChildren(...countCards(JSON.parse(ev.data))));
  await load("");
}

// ---------------------------------------------------------------- device
function dl(pairs) { return el("dl", {}, pairs.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v ?? "—" })])); }

function traceRow(r) {
  let what, detail;
  if (r.kind === "coap") {
    what = `${r.direction === "in" ? "←" : "→"} CoAP ${r.type} ${r.code} ${r.path || ""}`;
    const opts = (r.options || []).filter((o) => o.name !== "Uri-Path").map((o) => `${o.name}=${o.value}`).join(" ");
    detail = `mid=${r.mid} tok=${r.token} ${opts} ${r.payload ? JSON.stringify(r.payload.values || r.payload.text || r.payload) : ""}`;
  } else if (r.kind === "http" && r.sent !== undefined) {
    what = `⇄ HTTP ${r.method} → ${r.status} ${r.path} (image)`;
    detail = `Range ${r.range || "(whole image)"} → ${r.status === "206" ? "Content-Range " : r.status === "200" ? "bytes " : ""}${r.sent || "—"}`;
  } else if (r.kind === "http") {
    what = `⇄ HTTP ${r.method} → ${r.status} ${r.path}`;
    detail = `${JSON.stringify(r.request)} → ${JSON.stringify(r.answer)}`;
  } else if (r.kind === "syncml") {
    const cmds = (m) => (m && m.commands ? m.commands.map((c) => c.name + (c.items ? " " + c.items.join(",") : "")).join("; ") : "");
    what = `⇄ SyncML → ${r.status}`;
    detail = `${cmds(r.request)} ⇒ ${cmds(r.answer)}`;
  } else { what = `LwM2M ${r.event}`; detail = `ep=${r.endpoint} lt=${r.lifetime} b=${r.binding} ${r.address}`; }
  return el("tr", { "data-seq": r.seq }, el("td", { text: new Date(r.at).toLocaleTimeString() }), el("td", { text: what }),
    el("td", { class: "wrap", text: detail }));
}

async function viewDevice(id) {
  const d = await api("GET", "/devices/" + encodeURIComponent(id));
  const dev = d.device, reg = d.registration;
  const rows = el("tbody");
  const box = el("div", { class: "trace", id: "trace" }, el("table", {}, el("colgroup", {}, el("col", { width: "90" }),
    el("col", { width: "320" }), el("col")), rows));
  main().append(el("h1", { text: `Device ${dev.deviceId}` }), el("div", { class: "grid2" },
    el("div", { class: "card" }, el("h2", { text: "Identity" }), dl([["Protocol", dev.protocol], ["Make / model", `${dev.make} ${dev.model}`],
      ["Firmware", dev.firmware], ["IMEI", dev.imei], ["MDN", dev.mdn], ["Serving cell", dev.cell], ["Line", dev.line],
      ["Last contact", fmt(dev.lastSeen)], ["Delivery", dev.delivery]]),
    el("h2", { text: "Credentials" }), dl(d.credentials.map((c) => [c.label, c.set ? "set" + (c.identity ? ` (identity ${c.identity})` : "") : "not set"]))),
    el("div", { class: "card", id: "registration" }, el("h2", { text: "LwM2M registration" }), reg ? dl([["Endpoint", reg.endpoint],
      ["Version", reg.lwm2mVersion], ["Binding", reg.binding], ["Lifetime", reg.lifetime + " s"], ["Queue mode", reg.queueMode ? "yes" : "no"],
      ["Address", reg.address], ["Registered", fmt(reg.registeredAt)], ["Updated", fmt(reg.updatedAt)],
      ["Objects", reg.objects.map((o) => `/${o.id}` + (o.instances.length ? "/" + o.instances.join(",") : "")).join(" ")]])
      : el("p", { class: "muted", text: dev.protocol === "LWM2M" ? "Not registered now." : "Not an LwM2M device." }))),
  el("h2", { text: "Firmware history" }), el("table", { id: "history" }, el("thead", {}, el("tr", {}, ["Campaign", "From → to",
    "Status", "Reason", "Attempts"].map((h) => el("th", { text: h })))), el("tbody", {}, d.history.map((h) => el("tr", {},
    el("td", {}, el("a", { href: "#/campaign/" + h.campaignId, text: h.name || h.campaignId.slice(0, 8) })),
    el("td", { text: `${h.from} → ${h.to}` }), el("td", { text: h.status }), el("td", { class: "wrap", text: h.reason }),
    el("td", { class: "wrap", text: h.attempts.map((a) => `${fmt(a.startedAt)}–${a.endedAt ? fmt(a.endedAt) : "…"} ${a.outcome} ${a.reason}`).join(" | ") || "—" }))))),
  reg ? explorer(id, reg) : null,
  el("h2", { text: "Protocol trace (live while this page is open)" }), box);
  let last = 0;
  async function poll() {
    const t = await api("GET", `/devices/${encodeURIComponent(id)}/trace?after=${last}`);
    if (t.records.length) {
      const stick = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
      rows.append(...t.records.map(traceRow));
      while (rows.children.length > t.capacity) rows.firstChild.remove();
      if (stick) box.scrollTop = box.scrollHeight;
    }
    last = t.last;
  }
  await poll();
  state.timers.push(setInterval(() => poll().catch((e) => showError(e.message)), 1000));
}

// ---------------------------------------------------------------- object explorer (LwM2M)
const FW_STATES = ["Idle", "Downloading", "Downloaded", "Updating"];

function explorer(id, reg) {
  const path = el("input", { name: "path", value: "3/0", placeholder: "object/instance/resource, e.g. 5/0/3", required: true });
  const op = el("select", { name: "op" }, ["read", "observe", "cancel observe", "discover", "write", "execute"].map((o) => el("option", { text: o })));
  const value = el("input", { name: "value", placeholder: "value to write / execute arguments" });
  const values = el("tbody"), out = el("p", { class: "muted", id: "explorer-status" });
  const fw = el("div", { class: "fwstates", id: "fw-state" }, FW_STATES.map((name, i) => el("span", { "data-state": i, text: `${i} ${name}` })));
  const result = el("span", { class: "muted", id: "fw-result" });
  const watch = el("input", { type: "checkbox", id: "fw-watch" });
  const base = `/devices/${encodeURIComponent(id)}`;
  function show(answer, at) {
    out.textContent = `${answer.code || ""} ${answer.format || ""}${answer.decodeError ? " (cannot decode: " + answer.decodeError + ")" : ""}`;
    const shown = answer.values || (answer.links ? Object.fromEntries(answer.links.map((l) => [l.path, JSON.stringify(l.attributes)])) : {});
    values.replaceChildren(...Object.entries(shown).map(([p, v]) => el("tr", { "data-path": p }, el("td", { text: p }), el("td", { class: "wrap", text: typeof v === "string" ? v : JSON.stringify(v) }))));
    const st = shown["/5/0/3"], res = shown["/5/0/5"];
    if (st !== undefined) fw.querySelectorAll("span").forEach((n) => n.classList.toggle("on", Number(n.dataset.state) === st));
    if (res !== undefined) result.textContent = `Update Result ${res}` + (res === 1 ? " (success)" : res === 0 ? " (initial)" : res >= 2 ? " (failure)" : "");
    if (at) out.append(` — ${at}`);
  }
  async function run(what, p, v) {
    const clean = p.replace(/^\/+|\/+$/g, "");
    const q = "?timeout=20";
    if (what === "read") return api("GET", `${base}/objects/${clean}${q}`);
    if (what === "observe") return api("POST", `${base}/observe/${clean}${q}`);
    if (what === "cancel observe") return api("DELETE", `${base}/observe/${clean}${q}`);
    if (what === "discover") return api("GET", `${base}/discover/${clean}${q}`);
    if (what === "execute") return api("POST", `${base}/execute/${clean}${q}`, v ? v : undefined);
    let parsed = v; try { parsed = JSON.parse(v); } catch (e) { /* text */ }
    return api("PUT", `${base}/objects/${clean}${q}`, { value: parsed });
  }
  const form = el("form", { class: "filters", id: "explorer-form", onsubmit: async (ev) => {
    ev.preventDefault(); showError(""); out.textContent = "asking the device…";
    try { show(await run(op.value, path.value, value.value), new Date().toLocaleTimeString()); } catch (e) { out.textContent = ""; showError(e.message); }
  } }, path, op, value, el("button", { class: "primary", type: "submit", text: "Go" }));
  const quick = el("div", { class: "actions" }, reg.objects.slice(0, 12).map((o) =>
    el("button", { type: "button", "data-object": o.id, text: `/${o.id}` + (o.instances.length ? `/${o.instances[0]}` : ""),
      onclick: () => { path.value = `${o.id}` + (o.instances.length ? `/${o.instances[0]}` : ""); op.value = "read"; form.requestSubmit(); } })));
  watch.addEventListener("change", () => {
    if (!watch.checked) return;
    const timer = setInterval(async () => {
      if (!watch.checked || !document.body.contains(watch)) { clearInterval(timer); return; }
      try { show(await run("read", "5/0"), new Date().toLocaleTimeString()); } catch (e) { watch.checked = false; showError(e.message); }
    }, 3000);
    state.timers.push(timer);
  });
  return el("div", { class: "card", id: "explorer" }, el("h2", { text: "Object explorer" }), quick, form, out,
    el("table", { id: "explorer-values" }, el("colgroup", {}, el("col", { width: "160" }), el("col")), values),
    el("h2", { text: "Firmware Update object (/5/0) state" }), fw, el("p", {}, result, " ",
      el("label", {}, watch, " read /5/0 every 3 s while this page is open")));
}

// ---------------------------------------------------------------- firmware
async function viewFirmware() {
  const list = await api("GET", "/firmware");
  const file = el("input", { type: "file", name: "file", id: "fw-file" });
  const names = ["name", "make", "model", "from", "to"];
  const form = el("form", { class: "stack card", id: "upload" },
    names.map((n) => el("label", {}, n, el("input", { name: n, required: n !== "from" }))),
    el("label", {}, "protocol", el("select", { name: "protocol" }, ["LWM2M", "HTTP", "OMADM"].map((p) => el("option", { text: p })))),
    el("label", {}, "kind", el("select", { name: "kind" }, ["firmware", "software"].map((p) => el("option", { text: p })))),
    el("label", {}, "image", file), el("button", { class: "primary", type: "submit", text: "Upload" }));
  const drop = el("div", { class: "drop", id: "drop", text: `Drop an image here (at most ${bytes(list.maxBytes)}) or choose a file below.` });
  drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault(); drop.classList.remove("over");
    if (ev.dataTransfer.files.length) { file.files = ev.dataTransfer.files; drop.textContent = ev.dataTransfer.files[0].name; }
  });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = file.files[0];
    if (!f) return showError("choose an image first");
    if (f.size > list.maxBytes) return showError(`the image is ${bytes(f.size)}; the server takes at most ${bytes(list.maxBytes)}`);
    try { await api("POST", "/firmware", new FormData(form)); route(); } catch (e) { showError(e.message); }
  });
  main().append(el("h1", { text: "Firmware" }), drop, form, el("table", { id: "packages" }, el("thead", {}, el("tr", {},
    ["Name", "Kind", "Make / model", "From → to", "Protocol", "Size", "SHA-256", "Signature", ""].map((h) => el("th", { text: h })))),
  el("tbody", {}, list.packages.map((p) => el("tr", {}, el("td", { text: p.name + (p.shared ? " (sample)" : "") }),
    el("td", { text: p.kind }), el("td", { text: `${p.make} ${p.model}` }), el("td", { text: `${p.from || "any"} → ${p.to}` }),
    el("td", { text: p.protocol }), el("td", { text: bytes(p.size) }), el("td", { title: p.sha256, text: p.sha256 }),
    el("td", { title: p.signature, text: p.signature }),
    el("td", {}, p.shared ? null : el("button", { type: "button", class: "danger", "data-delete": p.name, onclick: async () => {
      if (!confirm(`Delete ${p.name}?`)) return;
      try { await api("DELETE", "/firmware/" + encodeURIComponent(p.packageId)); route(); } catch (e) { showError(e.message); }
    }, text: "Delete" })))))),
  el("p", { class: "muted", text: "Images are signed by the server's ECDSA P-256 key. An image can be deleted while no campaign uses it; shared samples cannot." }));
}

// ---------------------------------------------------------------- campaigns
async function viewCampaigns(after) {
  const page = await api("GET", "/campaigns" + (after ? "?after=" + encodeURIComponent(after) : ""));
  main().append(el("h1", { text: "Campaigns" }), el("table", { id: "campaigns" }, el("thead", {}, el("tr", {},
    ["Campaign", "Firmware", "Protocol", "Status", "Dates"].map((h) => el("th", { text: h })))),
  el("tbody", {}, page.campaigns.map((c) => el("tr", {}, el("td", {}, el("a", { href: "#/campaign/" + c.campaignId,
    text: c.name || c.campaignId.slice(0, 8) })), el("td", { text: c.firmware }), el("td", { text: c.protocol }),
  el("td", { text: c.status + (c.isPilot ? " (pilot)" : "") }), el("td", { text: `${c.startDate} – ${c.endDate}` }))))),
  el("div", { class: "pager" }, page.next ? el("a", { href: "#/campaigns/" + encodeURIComponent(page.next), text: "Next ›" }) : null));
}

function field(label, input) { return el("label", {}, label, input); }
const today = (days = 0) => new Date(Date.now() + days * 864e5).toISOString().slice(0, 10);

function parseWindows(text) {
  return text.split(",").map((w) => w.trim()).filter(Boolean).map((w) => {
    const [a, b] = w.split("-").map((x) => parseInt(x, 10));
    return { startTime: a, endTime: b };
  });
}

async function viewWizard() {
  const fw = (await api("GET", "/firmware")).packages.filter((p) => p.kind === "firmware");
  const f = {
    firmware: el("select", { name: "firmwareName" }, fw.map((p) => el("option", { value: p.name, text: `${p.name} (${p.protocol})` }))),
    name: el("input", { name: "name", placeholder: "optional" }),
    mode: el("select", { name: "mode" }, el("option", { value: "list", text: "a list of device ids" }), el("option", { value: "filter", text: "a filter" })),
    list: el("textarea", { name: "deviceList", placeholder: "one device id a line (or separated by commas)" }),
    make: el("input", { name: "make" }), model: el("input", { name: "model" }), version: el("input", { name: "firmware" }),
    cell: el("input", { name: "cell" }), state: el("select", { name: "state" }, ["", "online", "registered"].map((o) => el("option", { value: o, text: o || "any" }))),
    start: el("input", { type: "date", name: "startDate", value: today() }), end: el("input", { type: "date", name: "endDate", value: today(7) }),
    windows: el("input", { name: "windows", placeholder: "e.g. 22-24,0-6 (UTC hours); empty: all day" }),
    cap: el("input", { type: "number", name: "cellCap", min: "1", placeholder: "account default" }),
    delivery: el("select", { name: "deliveryMethod" }, ["auto", "pull-coap", "pull-coaps", "pull-http", "pull-https", "push"].map((d) => el("option", { text: d }))),
  };
  const pilot = el("div", { class: "note", id: "pilot" });
  const filterBox = el("div", { class: "stack", hidden: true }, field("make", f.make), field("model", f.model),
    field("firmware now", f.version), field("serving cell", f.cell), field("state", f.state));
  let rule = null;
  async function explain() {
    const pkg = fw.find((p) => p.name === f.firmware.value);
    if (!pkg) return;
    rule = await api("GET", "/pilot?firmwareName=" + encodeURIComponent(pkg.name));
    pilot.textContent = rule.pilotNeeded
      ? `Pilot first: ${rule.make} ${rule.model} ${rule.from} → ${rule.to} has not been proven yet. Until ${rule.minDevices} devices have ` +
        `updated with at least ${Math.round(rule.minSuccess * 100)} % success (so far ${rule.succeeded} updated, ${rule.failed} failed), ` +
        `a campaign may hold at most ${rule.cap} devices and runs as a pilot. The server refuses a larger one.`
      : `The pilot rule is met for ${rule.make} ${rule.model} ${rule.from} → ${rule.to} (${rule.succeeded} updated, ${rule.failed} failed): any number of devices.`;
    pilot.append(el("br"), `Per-cell cap now: ${rule.cellCap} devices updating at once in one serving cell (an account setting, for every campaign).`);
  }
  f.firmware.addEventListener("change", () => explain().catch((e) => showError(e.message)));
  f.mode.addEventListener("change", () => { filterBox.hidden = f.mode.value !== "filter"; f.list.hidden = f.mode.value === "filter"; });
  const form = el("form", { class: "card", id: "wizard" }, el("div", { class: "stack" }, field("1. firmware", f.firmware), field("name", f.name)), pilot,
    el("h2", { text: "2. devices" }), field("pick devices by", f.mode), f.list, filterBox,
    el("h2", { text: "3. when and how" }), el("div", { class: "stack" }, field("start date (UTC)", f.start), field("end date (UTC)", f.end),
      field("daily windows", f.windows), field("per-cell cap", f.cap), field("delivery", f.delivery)),
    el("p", {}, el("button", { class: "primary", type: "submit", text: "Schedule campaign" })));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault(); showError("");
    const pkg = fw.find((p) => p.name === f.firmware.value);
    const body = { firmwareName: f.firmware.value, protocol: pkg ? pkg.protocol : "LWM2M", startDate: f.start.value, endDate: f.end.value,
      name: f.name.value || undefined, windows: f.windows.value ? parseWindows(f.windows.value) : undefined,
      cellCap: f.cap.value ? parseInt(f.cap.value, 10) : undefined, deliveryMethod: f.delivery.value };
    if (f.mode.value === "filter") body.filter = { make: f.make.value, model: f.model.value, firmware: f.version.value, cell: f.cell.value, state: f.state.value };
    else body.deviceList = f.list.value.split(/[\s,]+/).filter(Boolean);
    if (rule && rule.pilotNeeded && body.deviceList && body.deviceList.length > rule.cap)
      return showError(`a pilot may hold at most ${rule.cap} devices; this list has ${body.deviceList.length}`);
    try { const c = await api("POST", "/campaigns", body); location.hash = "#/campaign/" + c.campaignId; } catch (e) { showError(e.message); }
  });
  main().append(el("h1", { text: "New campaign" }), form);
  await explain();
}

const GROUPS = { success: ["UpgradeSuccess"], failed: ["UpgradeFailed", "RequestFailed", "UpgradeCancelled"],
  running: ["UpgradeInProgress", "UpgradeDownloaded", "UpgradeInstalling"], waiting: ["UpgradePending", "UpgradeQueued"] };
const grouped = (states) => Object.fromEntries(Object.entries(GROUPS).map(([g, list]) => [g, list.reduce((n, s) => n + (states[s] || 0), 0)]));

function chart(samples, total) {
  const w = 600, h = 200, n = Math.max(samples.length, 2), top = Math.max(total, 1);
  const x = (i) => (i / (n - 1)) * w, y = (v) => h - (v / top) * h;
  const layers = ["success", "running", "waiting", "failed"];
  const shapes = [];
  let base = samples.map(() => 0);
  for (const g of layers) {
    const upper = samples.map((s, i) => base[i] + s[g]);
    const pts = upper.map((v, i) => `${x(i)},${y(v)}`).concat(base.map((v, i) => `${x(i)},${y(v)}`).reverse());
    shapes.push(svg("polygon", { class: "s-" + g, points: pts.join(" "), "data-layer": g }));
    base = upper;
  }
  return svg("svg", { class: "chart", viewBox: `0 0 ${w} ${h}`, preserveAspectRatio: "none", role: "img", "aria-label": "devices per state over time" }, shapes);
}

async function viewCampaign(id) {
  const samples = [];
  const head = el("div"), chartBox = el("div", { id: "chart" }), cells = el("tbody"), failures = el("div", { id: "failures" });
  const legend = el("div", { class: "legend" }, Object.keys(GROUPS).map((g) => el("span", {}, el("i", { class: "swatch s-" + g }), g)));
  main().append(head, el("h2", { text: "Progress (devices per state)" }), legend, chartBox, el("h2", { text: "Per serving cell" }),
    el("table", { id: "cells" }, el("thead", {}, el("tr", {}, ["Cell", "Devices", "Updated", "Progress"].map((t) => el("th", { text: t })))), cells),
    el("h2", { text: "Failures by reason" }), failures);
  async function act(what) { try { await api("POST", `/campaigns/${id}/${what}`); await load(); } catch (e) { showError(e.message); } }
  async function load() {
    const c = await api("GET", "/campaigns/" + encodeURIComponent(id));
    const g = grouped(c.states);
    if (!samples.length) for (const t of c.timeline) samples.push({ success: t.success, failed: t.failed, running: 0, waiting: c.total - t.success - t.failed });
    samples.push(g);
    if (samples.length > 600) samples.shift();
    const final = ["CampaignEnded", "CampaignCancelled", "CampaignAborted", "CampaignRequestFailed"].includes(c.status);
    head.replaceChildren(el("h1", { text: `Campaign ${c.name || c.campaignId.slice(0, 8)}` }), dl([["Status", c.status + (c.status === "CampaignFailed" ? " (paused)" : "") + (c.isPilot ? " (pilot)" : "")],
      ["Firmware", `${c.firmware}: ${c.make} ${c.model} ${c.from} → ${c.to}`], ["Protocol / delivery", `${c.protocol} / ${c.delivery}`],
      ["Dates (UTC)", `${c.startDate} – ${c.endDate}`], ["Windows", c.windows.map((w) => `${w.startTime}-${w.endTime}`).join(", ") || "all day"],
      ["Devices", `${c.total}: ${g.success} updated, ${g.failed} failed or refused, ${g.running} updating, ${g.waiting} waiting`], ["Reason", c.reason]]),
    el("div", { class: "actions" },
      el("button", { class: "danger", id: "cancel", disabled: final, onclick: () => act("cancel"), text: c.started ? "Abort" : "Cancel" }),
      el("button", { id: "pause", disabled: c.status !== "CampaignScheduled", onclick: () => act("pause"), text: "Pause" }),
      el("button", { id: "resume", disabled: c.status !== "CampaignFailed", onclick: () => act("resume"), text: "Resume" }),
      el("span", { class: "muted", text: "Pause: no new attempt starts, running ones finish (the error threshold pauses too). Resume continues." })));
    chartBox.replaceChildren(chart(samples, c.total));
    cells.replaceChildren(...c.cells.map((cell) => {
      const cg = grouped(cell.states), bar = el("div", { class: "bar" });
      for (const k of ["success", "running", "failed"]) { const i = el("i", { class: "s-" + k }); i.style.width = (100 * cg[k] / cell.total) + "%"; bar.append(i); }
      return el("tr", {}, el("td", { text: cell.cell }), el("td", { text: cell.total }), el("td", { text: cg.success }), el("td", {}, bar));
    }));
    failures.replaceChildren(...(c.failures.length ? c.failures.map((f) => el("details", { class: "card" }, el("summary", { text: `${f.count} × ${f.reason}` }),
      el("p", {}, f.devices.flatMap((d) => [el("a", { href: "#/device/" + encodeURIComponent(d), text: d }), " "])))) : [el("p", { class: "muted", text: "None." })]));
  }
  await load();
  state.timers.push(setInterval(() => load().catch((e) => showError(e.message)), 2000));
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", () => {
  $("#signout").addEventListener("click", async () => { await api("POST", "/logout").catch(() => {}); state.me = null; location.hash = "#/login"; });
  route();
});
