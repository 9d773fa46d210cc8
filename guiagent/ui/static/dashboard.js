// guiagent farm dashboard: renders each server-sent snapshot in place (text only: no markup from the farm).
"use strict";

(function dashboard() {
  const devices = document.getElementById("devices");
  const template = document.getElementById("device-card");
  const cards = new Map();

  function text(value, suffix) {
    return value === null || value === undefined || value === "" ? "—" : String(value) + (suffix || "");
  }

  function card(device) {
    let el = cards.get(device.id);
    if (!el) {
      el = template.content.firstElementChild.cloneNode(true);
      el.dataset.device = device.id;
      devices.appendChild(el);
      cards.set(device.id, el);
    }
    return el;
  }

  function render(device) {
    const el = card(device);
    const state = device.busy && device.state === "ok" ? "busy" : device.state;
    el.className = "device " + state.replace(/[^a-z_]/g, "_");
    el.dataset.state = device.state;
    el.dataset.deviceId = device.device_id || "";
    el.dataset.task = device.task || "";
    el.dataset.episodes = String(device.episodes);
    const fields = {
      id: device.id, state: device.busy ? device.state + " · running" : device.state,
      device: [device.kind, device.env_id].filter(Boolean).join(" · ") || "—", task: text(device.task),
      step: text(device.step), episodes: text(device.episodes), steps: text(device.steps),
      episodes_per_min: text(device.episodes_per_min), steps_per_min: text(device.steps_per_min),
      recoveries: text(device.recoveries), quarantines: text(device.quarantines),
      heartbeat_age: text(device.heartbeat_age, " s ago"), last_error: text(device.last_error),
    };
    for (const [name, value] of Object.entries(fields)) {
      const field = el.querySelector('[data-field="' + name + '"]');
      if (field.textContent !== value) field.textContent = value;
    }
    const img = el.querySelector('[data-field="screen"]');
    const src = device.screen ? "screens/" + device.screen.split("/").map(encodeURIComponent).join("/") : "";
    if (img.getAttribute("src") !== src) {
      if (src) img.setAttribute("src", src); else img.removeAttribute("src");
    }
  }

  function update(snapshot) {
    const seen = new Set();
    for (const device of snapshot.devices) {
      render(device);
      seen.add(device.id);
    }
    for (const [id, el] of cards) {
      if (!seen.has(id)) { el.remove(); cards.delete(id); }
    }
    const problem = document.getElementById("problem");
    problem.hidden = !snapshot.problem;
    problem.textContent = snapshot.problem || "";
    const queues = Object.entries(snapshot.queues).map(([kind, n]) => kind + " " + n).join(", ");
    document.getElementById("status").textContent =
      snapshot.devices.length + " devices · queues: " + (queues || "—") + " · updated " +
      new Date(snapshot.time * 1000).toLocaleTimeString();
    const errors = document.getElementById("errors");
    errors.replaceChildren(...(snapshot.errors.length ? snapshot.errors.map((e) => {
      const li = document.createElement("li");
      li.textContent = new Date(e.time * 1000).toLocaleTimeString() + " " + e.device + ": " + e.error;
      return li;
    }) : [Object.assign(document.createElement("li"), { className: "muted", textContent: "none" })]));
    document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
  }

  const source = new EventSource("events");
  source.addEventListener("status", (event) => update(JSON.parse(event.data)));
  source.addEventListener("error", () => {
    document.getElementById("status").textContent = "connection lost, reconnecting…";
  });
})();
