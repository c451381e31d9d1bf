// The station makes itself heard: tones generated in the page (Web Audio, nothing downloaded), enabled by one
// click (browsers allow sound only after one), repeating until what they announce is answered.
//   alarm       an unanswered seizure alarm: three high pulses + two, every 3 s (a high-priority pattern)
//   escalation  an alarm or lasting fault escalated (nobody answered in time): faster, higher, two-tone
//   fault       a lasting fault (the daemon cannot tell) unanswered: two low pulses every 6 s
// The most urgent one plays; acknowledging stops it. A browser notification goes out for each new alarm,
// escalation or lasting fault, where the browser permits it (asked at the same click).
"use strict";

const Sound = (() => {
  const PATTERNS = {
    escalation: { every: 1.6, tones: [[1320, 0.00, 0.12], [990, 0.16, 0.12], [1320, 0.32, 0.12], [990, 0.48, 0.12]] },
    alarm: { every: 3.0, tones: [[880, 0, 0.15], [880, 0.25, 0.15], [880, 0.5, 0.15], [880, 1.0, 0.15], [880, 1.25, 0.15]] },
    fault: { every: 6.0, tones: [[440, 0, 0.3], [330, 0.45, 0.3]] },
  };
  let ctx = null;
  let on = false;
  let playing = "";
  let timer = null;
  const notified = new Set();
  const button = document.getElementById("sound");

  function show() {
    button.setAttribute("aria-pressed", on ? "true" : "false");
    button.className = `sound ${on ? "on" : "off"}${playing ? " playing" : ""}`;
    button.dataset.playing = playing;
    button.textContent = on ? `♪ Sound ON${playing ? ` — ${playing.toUpperCase()}` : ""}`
      : "✕ Sound OFF — click to turn on";
    document.body.dataset.sound = on ? "on" : "off";
  }

  function beep(freq, at, length) {
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.type = "square";
    osc.frequency.value = freq;
    const t = ctx.currentTime + at;
    gain.gain.setValueAtTime(0, t);
    gain.gain.linearRampToValueAtTime(0.25, t + 0.01);
    gain.gain.setValueAtTime(0.25, t + length - 0.02);
    gain.gain.linearRampToValueAtTime(0, t + length);
    osc.connect(gain).connect(ctx.destination);
    osc.start(t);
    osc.stop(t + length + 0.02);
  }

  function play(kind) {
    if (kind === playing && timer) return;
    clearInterval(timer);
    timer = null;
    playing = kind;
    if (kind && on && ctx) {
      const p = PATTERNS[kind];
      const once = () => p.tones.forEach(([f, at, len]) => beep(f, at, len));
      once();
      timer = setInterval(once, p.every * 1000);
    }
    show();
  }

  button.addEventListener("click", async () => {
    on = !on;
    if (on) {
      ctx = ctx || new (window.AudioContext || window.webkitAudioContext)();
      await ctx.resume();
      beep(660, 0, 0.08);  // the click is answered: sound works
      if ("Notification" in window && Notification.permission === "default") Notification.requestPermission();
    }
    const kind = playing;
    playing = "";
    play(kind);
  });

  function notify(key, title, body) {
    if (notified.has(key)) return;
    notified.add(key);
    if ("Notification" in window && Notification.permission === "granted") {
      try { new Notification(title, { body, tag: key, requireInteraction: true }); } catch (e) { /* not here */ }
    }
  }

  // What the ward calls for: the most urgent unanswered thing (escalation > alarm > lasting fault).
  function update(ward) {
    let want = "";
    const rank = { "": 0, fault: 1, alarm: 2, escalation: 3 };
    for (const bed of ward.beds) {
      for (const a of bed.alarms) {
        if (a.answered) continue;
        const kind = a.level > 0 ? "escalation" : "alarm";
        if (rank[kind] > rank[want]) want = kind;
        notify(`${a.alarm_id}/${a.level}`, `${a.level > 0 ? "ESCALATED" : ""} SEIZURE ALARM — ${bed.patient}`.trim(),
               `peak ${Math.round((a.peak || 0) * 100)} %: answer it at the station`);
      }
      for (const f of bed.faults) {
        if (f.answered || f.level === 0) continue;  // a fault that lasts (escalated) calls; a passing one does not
        const kind = f.level > 1 ? "escalation" : "fault";
        if (rank[kind] > rank[want]) want = kind;
        notify(`${f.alarm_id}/${f.level}`, `${bed.patient}: the daemon cannot tell`,
               `${f.fault_type} since ${new Date(f.started_wall * 1000).toLocaleTimeString()}`);
      }
    }
    play(want);
  }

  show();
  return { update, get on() { return on; }, get playing() { return playing; } };
})();
