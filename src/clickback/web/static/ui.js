// clickback dashboard: the overview chart (uPlot), copy buttons, confirmations and the
// refresh of pages waiting for something. No inline scripts: the pages' CSP forbids them.
(function () {
  "use strict";

  function chart() {
    var holder = document.getElementById("chart");
    var source = document.getElementById("chart-data");
    if (!holder || !source || typeof window.uPlot !== "function") return;
    var data = JSON.parse(source.textContent);
    var labels = data.labels;
    var xs = labels.map(function (_, i) { return i; });
    var opts = {
      width: Math.max(320, holder.clientWidth - 16),
      height: 300,
      scales: { x: { time: false }, money: {} },
      axes: [
        {
          values: function (u, splits) {
            return splits.map(function (i) { return labels[i] === undefined ? "" : labels[i]; });
          }
        },
        { label: "clicks · conversions" },
        { scale: "money", side: 1, label: "commission", grid: { show: false } }
      ],
      series: [
        { label: "period", value: function (u, i) { return i == null || labels[i] === undefined ? "" : labels[i]; } },
        { label: "clicks", stroke: "#2f6fde", width: 2 },
        { label: "conversions", stroke: "#1a7f4b", width: 2 },
        { label: "commission", stroke: "#b26b00", width: 2, scale: "money" }
      ]
    };
    new window.uPlot(opts, [xs, data.clicks, data.conversions, data.commission], holder);
  }

  function copyButtons() {
    document.querySelectorAll("[data-copy]").forEach(function (button) {
      button.addEventListener("click", function () {
        var field = document.getElementById(button.getAttribute("data-copy"));
        field.select();
        var done = function () { button.textContent = "Copied"; };
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(field.value).then(done, function () {
            document.execCommand("copy");
            done();
          });
        } else {
          document.execCommand("copy");
          done();
        }
      });
    });
  }

  function confirmations() {
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
      });
    });
  }

  function refresh() {
    var waiting = document.querySelector("[data-refresh]");
    if (waiting) {
      var seconds = Number(waiting.getAttribute("data-refresh")) || 5;
      window.setTimeout(function () { window.location.reload(); }, seconds * 1000);
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    chart();
    copyButtons();
    confirmations();
    refresh();
  });
})();
