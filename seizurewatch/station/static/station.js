// The nurse-station page: renders the ward pushed by the server (Server-Sent Events on /events) and
// posts acknowledgements to /api/ack. No broker credentials here: the server holds the only connection.
"use strict";

const SYMBOL = { alarm: "▲", fault: "◆", offline: "✕", ok: "●", starting: "…" };
const WORD = { alarm: "Alarm", fault: "Fault", offline: "Offline", ok: "OK", starting: "Starting" };
const ACTION_WORD = { ack: "Acknowledged", false_alarm: "False alarm", confirmed: "Confirmed seizure" };
const FAULT_WORD = {
  stream_lost: "EEG stream lost", stream_gap: "gap in the EEG", flatline: "flat signal", clipping: "clipping",
  nonfinite: "invalid samples", line_noise: "mains noise", model_error: "model error",
  amplitude: "implausible amplitude (units or gain?)", publish_refused: "broker refuses this bed's alarms",
};
// Risk per horizon (a prediction model): word + symbol + colour, never colour alone
// (bars of rising height: not the alarm's ▲, a risk level is advice, not an alarm)
const RISK_SYMBOL = { low: "▁", elevated: "▄", high: "█", unknown: "?" };
const RISK_WORD = { low: "low", elevated: "elevated", high: "HIGH", unknown: "not yet known" };
const pending = new Map();  // alarm_id -> "sending" | error text
let lastWard = null;
// The token the server put in this page: an acknowledgement without it is refused (another site cannot send one).
const TOKEN = (document.querySelector('meta[name="seizurewatch-token"]') || {}).content || "";
// The server pushes the ward every second; a page that heard nothing for this long says it may be out of date.
const STALE_PAGE_MS = 5000;
let lastPush = Date.now();

const $ = (sel, root = document) => root.querySelector(sel);
const byInput = $("#by");
byInput.value = localStorage.getItem("seizurewatch.by") || "";
byInput.addEventListener("change", () => localStorage.setItem("seizurewatch.by", byInput.value.trim()));

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function ago(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function clock(wall) {
  return new Date(wall * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit",
                                                         hour12: false });
}

function pct(p) { return p === null || p === undefined ? "–" : `${Math.round(p * 100)} %`; }

function trace(history) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "trace");
  svg.setAttribute("viewBox", "-600 0 600 100");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "seizure probability over the last 10 minutes");
  const mid = document.createElementNS(ns, "line");
  mid.setAttribute("x1", "-600"); mid.setAttribute("x2", "0"); mid.setAttribute("y1", "50"); mid.setAttribute("y2", "50");
  mid.setAttribute("stroke", "#3b4753"); mid.setAttribute("stroke-dasharray", "6 6");
  svg.appendChild(mid);
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("fill", "none"); line.setAttribute("stroke", "#7cc4ff"); line.setAttribute("stroke-width", "3");
  line.setAttribute("vector-effect", "non-scaling-stroke");
  line.setAttribute("points", history.map(([dt, p]) => `${dt.toFixed(1)},${(100 - p * 100).toFixed(1)}`).join(" "));
  svg.appendChild(line);
  return svg;
}

async function answer(bed, item, action, buttons, errorLine) {
  pending.set(item.alarm_id, "sending");
  buttons.forEach((b) => { b.disabled = true; });
  errorLine.textContent = "sending…";
  try {
    const r = await fetch("/api/ack", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Seizurewatch-Station": "1", "X-Seizurewatch-Token": TOKEN },
      body: JSON.stringify({ patient: bed.patient, alarm_id: item.alarm_id, action, by: byInput.value.trim() }),
    });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
    pending.set(item.alarm_id, "sent — waiting for the bedside daemon to confirm…");
    errorLine.textContent = pending.get(item.alarm_id);
  } catch (err) {
    pending.set(item.alarm_id, `NOT SENT: ${err.message}`);
    errorLine.textContent = pending.get(item.alarm_id);
    buttons.forEach((b) => { b.disabled = false; });
  }
}

function itemBox(bed, item, now, kind) {
  const box = el("div", `item ${kind}`);
  box.dataset.alarmId = item.alarm_id;
  const what = el("div");
  if (kind === "fault") {
    const chans = item.channels.length ? ` (${item.channels.length} channel${item.channels.length > 1 ? "s" : ""})` : "";
    what.appendChild(el("span", "what", `◆ ${FAULT_WORD[item.fault_type] || item.fault_type}${chans}`));
    what.appendChild(el("span", "since", ` since ${clock(item.started_wall)}`));
  } else if (kind === "review") {
    what.appendChild(el("span", "what", "Ended alarm, not answered: "));
    what.appendChild(el("span", "", `${clock(item.started_wall)}–${clock(item.ended_wall)}, peak ${pct(item.peak)}`));
    if (item.reconciled) what.appendChild(el("span", "since", " (its end never arrived; the bed says it is over)"));
  } else {
    what.appendChild(el("span", "what", "▲ SEIZURE ALARM "));
    const since = el("span", "since", `for ${ago(now - item.started_wall)}`);
    since.dataset.since = item.started_wall;
    what.appendChild(since);
    what.appendChild(el("span", "", ` · peak ${pct(item.peak)}`));
  }
  if (item.level > 0 && !item.answered) what.appendChild(el("span", "esc", ` · ESCALATED ×${item.level}`));
  box.appendChild(what);
  if (item.acks.length) {
    const last = item.acks[item.acks.length - 1];
    box.appendChild(el("div", "answered",
      `✓ ${ACTION_WORD[last.action] || last.action} by ${last.by}${last.wall_time ? ` at ${clock(last.wall_time)}` : ""}`));
  }
  const errorLine = el("div", "error", "");
  const state = pending.get(item.alarm_id);
  if (state && !item.answered) errorLine.textContent = state === "sending" ? "sending…" : state;
  const actions = kind === "fault" ? ["ack"] : ["ack", "false_alarm", "confirmed"];
  const labels = { ack: "Acknowledge", false_alarm: "False alarm", confirmed: "Confirmed seizure" };
  const row = el("div", "buttons");
  const buttons = [];
  for (const a of actions) {
    if (item.acks.some((x) => x.action === a)) continue;
    if (a === "ack" && item.acks.length) continue;  // already acknowledged; marks still possible
    const b = el("button", a, labels[a]);
    b.type = "button";
    b.dataset.action = a;
    b.disabled = state === "sending";
    b.addEventListener("click", () => answer(bed, item, a, buttons, errorLine));
    buttons.push(b);
    row.appendChild(b);
  }
  if (buttons.length) box.appendChild(row);
  box.appendChild(errorLine);
  return box;
}

function horizon(seconds) {
  if (seconds >= 3600 && seconds % 3600 === 0) return `${seconds / 3600} h`;
  if (seconds >= 60 && seconds % 60 === 0) return `${seconds / 60} min`;
  return `${seconds} s`;
}

function riskLine(bed) {
  const line = el("div", "risk");
  // an offline bed's levels are its last ones, never the current risk
  line.appendChild(el("span", "rlabel", bed.shown === "offline" ? "last known seizure risk" : "seizure risk"));
  for (const h of bed.risk) {
    const chip = el("span", `rchip ${h.level}`, `${RISK_SYMBOL[h.level]} ${horizon(h.horizon_s)}: ${RISK_WORD[h.level]}`);
    chip.dataset.horizon = String(h.horizon_s);
    chip.dataset.level = h.level;
    chip.title = h.probability === null ? "not enough windows yet" : `median probability ${pct(h.probability)}`;
    line.appendChild(chip);
  }
  return line;
}

function signature(bed) {
  return JSON.stringify([bed.shown, bed.urgency_key, bed.state, bed.status, bed.alarms, bed.faults, bed.review,
                         bed.missed, bed.model, (bed.risk || []).map((h) => [h.horizon_s, h.level]),
                         [...pending.entries()].filter(([id]) => JSON.stringify(bed).includes(id))]);
}

function card(bed, now) {
  const unanswered = bed.alarms.some((a) => !a.answered);
  const c = el("section", `bed ${bed.shown}${bed.shown === "alarm" && unanswered ? " unanswered" : ""}`);
  c.id = `bed-${bed.patient}`;
  c.dataset.patient = bed.patient;
  c.dataset.shown = bed.shown;
  const top = el("div", "top");
  top.appendChild(el("div", "name", bed.patient));
  top.appendChild(el("div", `badge ${bed.shown}`, `${SYMBOL[bed.shown]} ${WORD[bed.shown]}`));
  c.appendChild(top);
  if (bed.risk && bed.risk.length) c.appendChild(riskLine(bed));
  const line = el("div", "line");
  line.appendChild(el("span", "prob", pct(bed.probability)));
  line.appendChild(el("span", "plabel", ""));
  line.appendChild(el("span", "seen", ""));
  c.appendChild(line);
  c.appendChild(trace(bed.history || traces.get(bed.patient) || []));
  const cap = el("div", "caption");
  cap.appendChild(el("span", "", "10 min ago"));
  cap.appendChild(el("span", "", "probability (dashed: 50 %)"));
  cap.appendChild(el("span", "", "now"));
  c.appendChild(cap);
  // which model is in force (a day-one pretrained model, or the patient's own once pinned)
  if (bed.model) c.appendChild(el("div", "model", `model: ${bed.model}`));
  for (const a of bed.alarms) c.appendChild(itemBox(bed, a, now, "alarm"));
  for (const f of bed.faults) c.appendChild(itemBox(bed, f, now, "fault"));
  for (const r of bed.review) c.appendChild(itemBox(bed, r, now, "review"));
  if (bed.missed) {
    c.appendChild(el("div", "item fault", `◆ ${bed.missed} event${bed.missed > 1 ? "s" : ""} from this bed never ` +
                     "reached the station (broker): check the bedside"));
  }
  c.dataset.sig = signature(bed);
  return c;
}

function probabilityLabel(bed) {
  if (bed.shown === "offline") {  // a last value from a silent box must not read as the current one
    return bed.probability === null ? "no reading" : `no reading (last was ${pct(bed.probability)})`;
  }
  if (bed.probability !== null) return "seizure probability";  // of the latest window
  if (bed.shown === "fault") return "no reading: the signal cannot be judged";
  return bed.shown === "offline" ? "no reading" : "no reading yet";
}

function refresh(c, bed, now) {
  $(".prob", c).textContent = bed.shown === "offline" ? "–" : pct(bed.probability);
  $(".plabel", c).textContent = probabilityLabel(bed);
  const seen = bed.seen_ago_s === null ? "no data yet" : `last data ${ago(bed.seen_ago_s)} ago`;
  $(".seen", c).textContent = bed.shown === "offline" ? `OFFLINE — ${seen}` : seen;
  if (bed.history) c.replaceChild(trace(bed.history), $("svg.trace", c));  // traces come every few seconds
  c.querySelectorAll("[data-since]").forEach((s) => { s.textContent = `for ${ago(now - Number(s.dataset.since))}`; });
}

const traces = new Map();  // patient -> the latest trace received (cards rebuilt between traces keep it)

function render(ward) {
  lastWard = ward;
  for (const bed of ward.beds) if (bed.history) traces.set(bed.patient, bed.history);
  const now = ward.now;
  const main = $("#beds");
  const keep = new Set();
  let prev = null;
  for (const bed of ward.beds) {
    let c = document.getElementById(`bed-${bed.patient}`);
    if (!c || c.dataset.sig !== signature(bed)) {
      const fresh = card(bed, now);
      if (c) main.replaceChild(fresh, c);
      c = fresh;
    }
    refresh(c, bed, now);
    const want = prev ? prev.nextSibling : main.firstChild;
    if (want !== c) main.insertBefore(c, want);  // most urgent first; nodes move only when the order changes
    keep.add(c.id);
    prev = c;
  }
  for (const c of [...main.children]) if (!keep.has(c.id)) c.remove();
  for (const [id] of pending) if (!JSON.stringify(ward.beds).includes(id)) pending.delete(id);
  const n = ward.counts;
  const parts = [`${ward.beds.length} bed${ward.beds.length === 1 ? "" : "s"}`];
  if (n.alarm) parts.push(`▲ ${n.alarm} ALARM`);
  if (n.offline) parts.push(`✕ ${n.offline} offline`);
  if (n.fault) parts.push(`◆ ${n.fault} fault`);
  $("#summary").textContent = parts.join(" · ");
  const link = $("#broker");
  link.className = `link ${ward.broker.connected ? "up" : "down"}`;
  link.textContent = ward.broker.connected ? `broker: connected (${ward.broker.name})`
    : `BROKER NOT CONNECTED — ${ward.broker.error || "connecting"}`;
  const banner = $("#banner");
  banner.hidden = ward.broker.connected;
  banner.textContent = "✕ No connection to the alarm broker: what you see may be out of date. Watch the patients directly.";
  document.title = n.alarm ? `▲ ${n.alarm} ALARM — seizurewatch` : "seizurewatch — ward";
}

function showUnreadable(ward) {
  let box = $("#unreadable");
  if (!box) {
    box = el("div", "banner");
    box.id = "unreadable";
    $("#beds").before(box);
  }
  const bad = ward.unreadable || [];
  box.hidden = !bad.length;
  box.textContent = bad.length ? `◆ Data from ${bad.map((b) => b.patient).join(", ")} cannot be shown ` +
    "(malformed): check those beds directly." : "";
}

function staleCheck() {  // pushes stopped (server stuck, network, a page that cannot read them): say so
  const quiet = Date.now() - lastPush;
  let box = $("#stale");
  if (!box) {
    box = el("div", "banner");
    box.id = "stale";
    $("#beds").before(box);
  }
  box.hidden = quiet < STALE_PAGE_MS;
  box.textContent = `✕ No update from the station server for ${Math.round(quiet / 1000)} s: what you see may ` +
    "be out of date. Watch the patients directly.";
}
staleCheck();
setInterval(staleCheck, 1000);

function connect() {
  const src = new EventSource("/events");
  src.onmessage = (e) => {
    let ward;
    try { ward = JSON.parse(e.data); } catch (err) { return; }  // unreadable: not an update (the banner comes)
    lastPush = Date.now();
    render(ward);
    showUnreadable(ward);
  };
  src.onerror = () => {
    const banner = $("#banner");
    banner.hidden = false;
    banner.textContent = "✕ Lost the station server: what you see may be out of date. Reconnecting…";
  };
}
connect();
