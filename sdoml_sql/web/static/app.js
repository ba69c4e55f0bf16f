// The sdoml-sql explorer: each page draws itself from the JSON API (no build step, no libraries).
"use strict";

const $ = (id) => document.getElementById(id);
const PAGE_ROWS = 100;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

async function getJSON(url) {
  const response = await fetch(url);
  const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

function showError(message) {
  const box = $("error");
  box.textContent = message ? `error: ${message}` : "";
  box.hidden = !message;
}

function framePath(frame) {
  return `${frame.instrument}/${frame.year}/${encodeURIComponent(frame.channel)}/${frame.idx}`;
}

function thumbnail(frame, title) {
  return el("a", { href: `/frame/${framePath(frame)}`, title },
    el("img", { class: "thumb", src: `/api/frames/${framePath(frame)}/thumbnail.png`, alt: title }));
}

function timeText(value) {
  return value ? String(value).replace("T", " ").replace(/\.000000$/, "") : "no time";
}

// --- the SQL page ------------------------------------------------------------------------

async function sqlPage() {
  const params = new URLSearchParams(location.search);
  const editor = $("sql");
  const examples = await getJSON("/api/examples").catch(() => []);
  for (const example of examples) $("examples").append(el("option", { value: example.name, text: example.name }));
  $("examples").addEventListener("change", (event) => {
    const chosen = examples.find((e) => e.name === event.target.value);
    if (chosen) { editor.value = chosen.sql; run(0); }
  });
  editor.value = params.get("q") || (examples.length ? examples[0].sql : "SELECT * FROM aia LIMIT 10");
  editor.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); run(0); }
  });
  $("query-form").addEventListener("submit", (event) => { event.preventDefault(); run(0); });
  setDownloads(editor.value);
  editor.addEventListener("input", () => setDownloads(editor.value));
  if (params.has("q")) run(Number(params.get("offset")) || 0);
}

function setDownloads(sql) {
  const query = new URLSearchParams({ sql });
  $("download-csv").href = `/api/query.csv?${query}`;
  $("download-json").href = `/api/query.json?${query}`;
}

async function run(offset) {
  const sql = $("sql").value;
  setDownloads(sql);
  history.replaceState(null, "", `/sql?${new URLSearchParams(offset ? { q: sql, offset } : { q: sql })}`);
  $("status").textContent = "running…";
  showError("");
  try {
    const page = await getJSON(`/api/query?${new URLSearchParams({ sql, offset, limit: PAGE_ROWS })}`);
    renderResults(page);
  } catch (error) {
    $("status").textContent = "";
    $("results").replaceChildren();
    $("pager").replaceChildren();
    $("hints").replaceChildren();
    showError(error.message);
  }
}

function renderResults(page) {
  const last = page.offset + page.rows.length;
  $("status").textContent = `${page.row_count.toLocaleString("en")} row${page.row_count === 1 ? "" : "s"}` +
    (page.rows.length ? ` · showing ${page.offset + 1}–${last}` : "") + ` · ${page.elapsed_ms} ms`;
  $("status").dataset.rows = page.row_count;
  $("hints").replaceChildren(...page.hints.map((hint) => el("li", { text: `hint: ${hint}` })));
  const withFrames = page.frames.some((frames) => frames.length);
  const head = el("tr", {}, withFrames ? el("th", { text: "frame" }) : null,
    ...page.columns.map((name) => el("th", { text: name })));
  const body = page.rows.map((row, i) => el("tr", {},
    withFrames ? el("td", { class: "frames" }, el("div", { class: "thumbs" },
      ...page.frames[i].map((f) => thumbnail(f, `${f.instrument.toUpperCase()} ${f.channel} ${f.year} idx ${f.idx}`)))) : null,
    ...row.map((value) => cell(value))));
  $("results").replaceChildren(el("thead", {}, head), el("tbody", {}, ...body));
  const pager = [];
  if (page.offset > 0) pager.push(el("button", { type: "button", onclick: () => run(Math.max(0, page.offset - page.limit)), text: "← previous page" }));
  if (last < page.row_count) pager.push(el("button", { type: "button", onclick: () => run(last), text: "next page →" }));
  $("pager").replaceChildren(...pager);
}

function cell(value) {
  if (value === null) return el("td", { class: "null", text: "NULL" });
  if (typeof value === "number") return el("td", { class: "num", text: String(value) });
  if (typeof value === "object") return el("td", { text: JSON.stringify(value) });
  return el("td", { text: String(value) });
}

// --- the frame page ----------------------------------------------------------------------

async function framePage() {
  const path = location.pathname.replace(/^\/frame\//, "");
  let info;
  try {
    info = await getJSON(`/api/frames/${path}`);
  } catch (error) {
    showError(error.message);
    return;
  }
  const name = `${info.instrument.toUpperCase()} ${info.channel}`;
  document.title = `sdoml-sql · ${name} ${timeText(info.T_OBS)}`;
  $("title").textContent = `${name} · ${info.year} idx ${info.idx}`;
  $("time").textContent = `${timeText(info.T_OBS)} UTC`;
  $("image").src = `/api/frames/${path}.png`;
  $("image").alt = `${name} ${timeText(info.T_OBS)}`;
  $("download-fits").href = `/api/frames/${path}.fits`;
  $("download-png").href = `/api/frames/${path}.png`;
  for (const side of ["previous", "next"]) {
    const link = $(side);
    if (info[side]) {
      link.href = `/frame/${framePath(info[side])}`;
      link.title = timeText(info[side].T_OBS);
    } else {
      link.classList.add("disabled");
      link.removeAttribute("href");
    }
  }
  document.addEventListener("keydown", (event) => {
    const side = { ArrowLeft: "previous", ArrowRight: "next" }[event.key];
    if (side && info[side]) location.href = `/frame/${framePath(info[side])}`;
  });
  $("others").replaceChildren(...info.others.map((other) => el("figure", {},
    thumbnail(other, `${other.instrument.toUpperCase()} ${other.channel} ${timeText(other.T_OBS)}`),
    el("figcaption", {}, el("b", { text: other.channel }), el("br"),
      `${other.offset_s >= 0 ? "+" : ""}${other.offset_s} s`))));
  if (!info.others.length) $("others").textContent = "no other channel within a day";
  try {
    const header = await getJSON(`/api/frames/${path}/header`);
    $("header").replaceChildren(...header.header.map(([key, value]) =>
      el("tr", {}, el("td", { text: key }), el("td", { text: value === null ? "" : String(value) }))));
  } catch (error) {
    showError(error.message);
  }
}

// --- the timeline ------------------------------------------------------------------------

const COLOURS = { frames: "#b9c0c8", empty: "#f6c9c9", gap: "#d62728" };
const FLAG_COLOURS = ["#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#000000", "#7f7f7f", "#bcbd22"];

async function timelinePage() {
  const params = new URLSearchParams(location.search);
  for (const name of ["start", "stop", "bucket", "gap"]) $(name).value = params.get(name) || "";
  $("timeline-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const query = new URLSearchParams();
    for (const name of ["start", "stop", "bucket", "gap"]) if ($(name).value) query.set(name, $(name).value);
    history.replaceState(null, "", `/timeline?${query}`);
    drawTimeline(query);
  });
  drawTimeline(params);
}

async function drawTimeline(params) {
  $("status").textContent = "loading…";
  showError("");
  let data;
  try {
    data = await getJSON(`/api/coverage?${params}`);
  } catch (error) {
    $("status").textContent = "";
    $("timeline").replaceChildren();
    showError(error.message);
    return;
  }
  $("status").textContent = `${timeText(data.start)} to ${timeText(data.stop)}, buckets of ${data.bucket}; ` +
    `${data.frames.toLocaleString("en")} frames, pixel flags checked for ${data.frames ? Math.round(100 * data.checked / data.frames) : 0}%`;
  const colours = Object.fromEntries(data.flags.map((flag, i) => [flag, FLAG_COLOURS[i % FLAG_COLOURS.length]]));
  const seen = new Set(data.channels.flatMap((c) => c.buckets.flatMap((b) => Object.keys(b.flagged))));
  $("legend").replaceChildren(
    ...[["frames", COLOURS.frames], ["no frame", COLOURS.empty], [`gap > ${data.gap} starts`, COLOURS.gap]]
      .concat(data.flags.filter((f) => seen.has(f)).map((f) => [f, colours[f]]))
      .map(([label, colour]) => el("span", { style: `--swatch: ${colour}`, text: label })));
  const svgNS = "http://www.w3.org/2000/svg";
  const svg = (tag, attrs = {}) => {
    const node = document.createElementNS(svgNS, tag);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
    return node;
  };
  const label = 70, rowHeight = 34, top = 6, count = Math.max(1, ...data.channels.map((c) => c.buckets.length));
  const width = Math.max(600, Math.min(1400, window.innerWidth - 60));
  const step = (width - label - 10) / count;
  const root = svg("svg", { width, height: top + rowHeight * data.channels.length + 24, role: "img" });
  data.channels.forEach((channel, row) => {
    const y = top + row * rowHeight, h = rowHeight - 8;
    const most = Math.max(1, ...channel.buckets.map((b) => b.frames));
    const name = svg("text", { x: label - 8, y: y + h / 2 + 4, "text-anchor": "end", "font-size": 12 });
    name.textContent = channel.channel;
    root.append(name);
    channel.buckets.forEach((bucket, i) => {
      const x = label + i * step;
      const group = svg("g", { class: "bucket", "data-channel": channel.channel, "data-start": bucket.start, "data-frames": bucket.frames });
      const title = svg("title");
      title.textContent = `${channel.channel} ${timeText(bucket.start)}: ${bucket.frames} frames` +
        (bucket.gaps ? `, ${bucket.gaps} gap(s)` : "") +
        Object.entries(bucket.flagged).map(([flag, n]) => `, ${n} ${flag}`).join("");
      group.append(title);
      group.append(svg("rect", { class: "hit", x, y, width: step, height: h, fill: "transparent" }));
      if (!bucket.frames) group.append(svg("rect", { x, y, width: step, height: h, fill: COLOURS.empty }));
      const barHeight = h * bucket.frames / most;
      group.append(svg("rect", { x, y: y + h - barHeight, width: Math.max(step - 0.5, 0.5), height: barHeight, fill: COLOURS.frames }));
      let base = 0;
      for (const [flag, n] of Object.entries(bucket.flagged)) {
        const flagHeight = h * n / most;
        group.append(svg("rect", { x, y: y + h - base - flagHeight, width: Math.max(step - 0.5, 0.5), height: flagHeight, fill: colours[flag] }));
        base += flagHeight;
      }
      if (bucket.gaps) group.append(svg("path", { d: `M${x + step / 2 - 3},${y - 4} h6 l-3,4 z`, fill: COLOURS.gap }));
      group.addEventListener("click", () => { location.href = bucketLink(channel, bucket, data.bucket_seconds); });
      root.append(group);
    });
  });
  const axis = top + rowHeight * data.channels.length + 14;
  for (const [i, anchor] of [[0, "start"], [count, "end"]]) {
    const bucket = data.channels[0] && data.channels[0].buckets[Math.min(i, count - 1)];
    if (!bucket) continue;
    const text = svg("text", { x: label + i * step, y: axis, "font-size": 11, "text-anchor": anchor, fill: "#5d6875" });
    text.textContent = i === 0 ? timeText(data.start) : timeText(data.stop);
    root.append(text);
  }
  $("timeline").replaceChildren(root);
}

function sqlTime(date) {
  return date.toISOString().replace("T", " ").replace("Z", "");
}

function bucketLink(channel, bucket, seconds) {
  const start = new Date(`${bucket.start}Z`.replace(/(\.\d{3})\d*Z$/, "$1Z"));
  const stop = new Date(start.getTime() + seconds * 1000);
  const sql = `SELECT instrument, year, channel, idx, T_OBS, good, flags FROM frame_quality\n` +
    `WHERE instrument = '${channel.instrument}' AND channel = '${channel.channel}'\n` +
    `  AND T_OBS >= TIMESTAMP '${sqlTime(start)}' AND T_OBS < TIMESTAMP '${sqlTime(stop)}'\nORDER BY T_OBS`;
  return `/sql?${new URLSearchParams({ q: sql })}`;
}

const pages = { sql: sqlPage, frame: framePage, timeline: timelinePage };
pages[document.body.dataset.page]();
