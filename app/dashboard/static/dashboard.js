// Live job page: follows the job's event stream (same-origin SSE, the session cookie
// authenticates it), appends new events, moves the progress bar and redraws the loss curve.
// Everything else on the dashboard works without JavaScript.
"use strict";
// Deleting is not undoable: ask first (without JavaScript the button deletes directly).
for (const form of document.querySelectorAll("form.delete")) {
  form.addEventListener("submit", (event) => {
    const what = form.querySelector("button").getAttribute("aria-label") || "Delete";
    if (!window.confirm(what + "? This cannot be undone.")) event.preventDefault();
  });
}

(function () {
  const live = document.getElementById("live");
  if (!live || live.dataset.active !== "true" || !window.EventSource) return;
  const events = document.getElementById("events");
  const bar = document.getElementById("job-progress");
  const text = document.getElementById("job-progress-text");
  const chart = document.getElementById("loss-chart");
  let lossTimer = null;

  function redrawLoss() {
    if (lossTimer) return;
    lossTimer = setTimeout(async () => {
      lossTimer = null;
      const reply = await fetch(live.dataset.loss, {credentials: "same-origin"});
      if (!reply.ok) return;
      const svg = new DOMParser().parseFromString(await reply.text(), "image/svg+xml");
      chart.replaceChildren(document.importNode(svg.documentElement, true));
    }, 1000);
  }

  const source = new EventSource(live.dataset.stream);
  source.onmessage = (message) => {
    const event = JSON.parse(message.data);
    if (!events.querySelector(`[data-id="${CSS.escape(event.id)}"]`)) {
      const item = document.createElement("li");
      item.dataset.id = event.id;
      const when = document.createElement("time");
      when.textContent = new Date(event.created_at * 1000).toISOString().slice(11, 19);
      item.append(when, " " + event.message);
      events.append(item);
      events.scrollTop = events.scrollHeight;
    }
    const fraction = event.data && event.data.fraction;
    if (typeof fraction === "number" && fraction * 100 > bar.value) {
      bar.value = Math.round(fraction * 1000) / 10;
      text.textContent = bar.value + "%";
    }
    if (event.type === "metrics") redrawLoss();
  };
  source.addEventListener("done", () => {
    source.close();
    window.location.reload();  // the final state: status, adapter, safety report
  });
})();
