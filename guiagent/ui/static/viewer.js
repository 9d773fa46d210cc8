// guiagent trajectory viewer: the index's filters and the keyboard between steps. No framework, no build.
"use strict";

(function filters() {
  const form = document.getElementById("filters");
  if (!form) return;
  const selects = Array.from(form.querySelectorAll("select[data-filter]"));
  const rows = Array.from(document.querySelectorAll("table.episodes tbody tr[data-task]"));
  const shown = document.getElementById("shown");

  function apply() {
    const wanted = selects.filter((s) => s.value !== "").map((s) => [s.dataset.filter, s.value]);
    let count = 0;
    for (const row of rows) {
      row.hidden = !wanted.every(([name, value]) => row.dataset[name] === value);
      if (!row.hidden) count += 1;
    }
    shown.textContent = String(count);
    const hash = new URLSearchParams(wanted).toString();
    history.replaceState(null, "", hash ? "#" + hash : location.pathname + location.search);
  }

  // The filter state lives in the URL's fragment, so a report can link to "the failures of step-20".
  const initial = new URLSearchParams(location.hash.slice(1));
  for (const select of selects) {
    const value = initial.get(select.dataset.filter);
    if (value !== null && Array.from(select.options).some((o) => o.value === value)) select.value = value;
    select.addEventListener("change", apply);
  }
  apply();
})();

(function keyboard() {
  const steps = Array.from(document.querySelectorAll("[data-step]"));
  if (!steps.length) return;
  let current = -1;

  function select(i) {
    if (i < 0 || i >= steps.length) return;
    for (const el of document.querySelectorAll(".current")) el.classList.remove("current");
    current = i;
    const step = steps[i];
    step.classList.add("current");
    for (const cell of document.querySelectorAll('.cell[data-row="' + step.dataset.step + '"]')) {
      cell.classList.add("current");
    }
    step.focus({ preventScroll: true });
    step.scrollIntoView({ block: "start" });
    history.replaceState(null, "", "#step-" + step.dataset.step);
    document.body.dataset.currentStep = step.dataset.step;
  }

  const next = ["j", "ArrowRight", "n"], previous = ["k", "ArrowLeft", "p"];
  document.addEventListener("keydown", (event) => {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    if (["INPUT", "SELECT", "TEXTAREA"].includes(event.target.tagName)) return;
    let target = null;
    if (next.includes(event.key)) target = current + 1;
    else if (previous.includes(event.key)) target = Math.max(current - 1, 0);
    else if (event.key === "Home") target = 0;
    else if (event.key === "End") target = steps.length - 1;
    if (target === null) return;
    event.preventDefault();
    select(Math.min(target, steps.length - 1));
  });

  const match = /^#step-(\d+)$/.exec(location.hash);
  if (match) select(steps.findIndex((s) => s.dataset.step === match[1]));
})();
