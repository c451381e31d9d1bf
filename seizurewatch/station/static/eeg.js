// The EEG behind an alarm, on its card: the seconds the model saw up to the decision ("why did it fire"),
// fetched once per alarm from the station (/api/eeg/<patient>/<alarm_id>) and drawn as a small stacked trace.
"use strict";

const Eeg = (() => {
  const cache = new Map();  // "patient/alarm_id" -> payload | "loading" | "missing"

  function draw(box, e) {
    const ns = "http://www.w3.org/2000/svg";
    const rows = e.data.length;
    const n = e.data[0].length;
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("class", "eeg");
    svg.setAttribute("viewBox", `0 0 ${n} ${rows * 10}`);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", `EEG before the alarm: ${rows} channels, ${(e.t_end - e.t_start).toFixed(0)} s`);
    // one scale for all channels (a robust amplitude), so a channel that is louder looks louder
    const all = e.data.flat().map(Math.abs).sort((a, b) => a - b);
    const scale = 4.5 / Math.max(all[Math.floor(all.length * 0.98)] || 1, 1);
    e.data.forEach((row, i) => {
      const line = document.createElementNS(ns, "polyline");
      const mid = i * 10 + 5;
      const med = [...row].sort((a, b) => a - b)[Math.floor(row.length / 2)];
      line.setAttribute("points", row.map((v, j) => `${j},${(mid - Math.max(-5, Math.min(5, (v - med) * scale))).toFixed(2)}`).join(" "));
      line.setAttribute("fill", "none");
      line.setAttribute("stroke", i % 2 ? "#9ccfff" : "#e6f1ff");
      line.setAttribute("stroke-width", "1");
      line.setAttribute("vector-effect", "non-scaling-stroke");
      svg.appendChild(line);
    });
    const wrap = document.createElement("div");
    wrap.className = "eegbox";
    wrap.dataset.alarmId = e.alarm_id;
    wrap.appendChild(svg);
    const cap = document.createElement("div");
    cap.className = "caption";
    const span = (t) => { const s = document.createElement("span"); s.textContent = t; return s; };
    cap.appendChild(span(`−${(e.t_end - e.t_start).toFixed(0)} s`));
    cap.appendChild(span(`EEG the model saw, ${rows} channels (${e.channels[0]}…${e.channels[rows - 1]})`));
    cap.appendChild(span(`alarm (${Math.round((e.probability || 0) * 100)} %)`));
    wrap.appendChild(cap);
    box.appendChild(wrap);
  }

  // Put the EEG of ``item`` into ``box`` (now if known, else when it arrives).
  function attach(box, patient, item) {
    if (!item.eeg) return;
    const key = `${patient}/${item.alarm_id}`;
    const got = cache.get(key);
    if (got && typeof got === "object") { draw(box, got); return; }
    if (got === "loading") return;
    cache.set(key, "loading");
    fetch(`/api/eeg/${encodeURIComponent(patient)}/${encodeURIComponent(item.alarm_id)}`)
      .then((r) => (r.ok ? r.json() : Promise.reject(new Error(`HTTP ${r.status}`))))
      .then((e) => {
        cache.set(key, e);
        const live = document.querySelector(`#bed-${CSS.escape(patient)} [data-alarm-id="${item.alarm_id}"].item`);
        if (live && !live.querySelector(".eegbox")) {
          draw(live, e);
          const after = live.querySelector(".buttons") || live.querySelector(".error");
          if (after) live.insertBefore(live.lastChild, after);  // above the buttons, as when drawn at once
        }
      })
      .catch(() => cache.delete(key));  // tried again at the next render
  }

  return { attach };
})();
