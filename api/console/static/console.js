// The console's behaviour beyond htmx: charts from JSON embedded in the page, copy
// buttons. Runs on load and on every htmx swap (htmx.onLoad).
(function () {
  "use strict";

  function renderChart(canvas) {
    if (canvas.dataset.rendered || typeof Chart === "undefined") return;
    var spec = JSON.parse(document.getElementById(canvas.dataset.source).textContent);
    var palette = ["#1d4ed8", "#16a34a", "#d97706", "#9333ea", "#dc2626"];
    var chart = new Chart(canvas, {
      type: spec.type || "bar",
      data: {
        labels: spec.labels,
        datasets: spec.datasets.map(function (set, i) {
          return {
            label: set.label,
            data: set.data,
            yAxisID: set.axis || "y",
            type: set.type || undefined,
            backgroundColor: palette[i % palette.length],
            borderColor: palette[i % palette.length],
          };
        }),
      },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        interaction: { mode: "index", intersect: false },
        scales: spec.scales || {},
      },
    });
    canvas.dataset.rendered = "true";
    canvas.chart = chart;
  }

  function setUp(root) {
    root.querySelectorAll("canvas[data-chart]").forEach(renderChart);
    root.querySelectorAll("[data-copy]").forEach(function (button) {
      if (button.dataset.bound) return;
      button.dataset.bound = "true";
      button.addEventListener("click", function () {
        var field = document.getElementById(button.dataset.copy);
        field.select();
        var done = function () {
          button.textContent = button.dataset.copied;
        };
        if (navigator.clipboard) {
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

  document.addEventListener("DOMContentLoaded", function () {
    if (window.htmx) {
      window.htmx.onLoad(setUp);
    } else {
      setUp(document);
    }
  });
})();
