// The monitoring charts: reads the series the page embeds (#monitoring-data) and draws one
// uPlot chart per figure, one line per prompt version. The table below the charts holds the
// same figures for readers without JavaScript.
(function () {
  "use strict";
  var COLORS = ["#2456d6", "#d92d20", "#079455", "#dc6803", "#7a5af8", "#0e9384", "#c11574", "#667085"];

  function sum(a, b) {
    return a.map(function (v, i) { return v === null && b[i] === null ? null : (v || 0) + (b[i] || 0); });
  }

  // Each chart: a list of [label, values, dashed] lines drawn from the page's series.
  var CHARTS = {
    logs: function (s) { return [[s.label, s.logs]]; },
    errors: function (s) { return [[s.label, s.errors]]; },
    latency: function (s) { return [[s.label + " p50", s.p50_ms], [s.label + " p95", s.p95_ms, true]]; },
    tokens: function (s) { return [[s.label, sum(s.prompt_tokens, s.output_tokens)]]; },
    cost: function (s) { return [[s.label, s.cost]]; },
    up_share: function (s) { return [[s.label, s.up_share]]; },
    correction_rate: function (s) { return [[s.label, s.correction_rate]]; }
  };

  function draw() {
    var source = document.getElementById("monitoring-data");
    if (!source || typeof uPlot === "undefined") { return; }
    var data = JSON.parse(source.textContent);
    document.querySelectorAll("figure.chart[data-chart]").forEach(function (figure) {
      var make = CHARTS[figure.getAttribute("data-chart")];
      var target = figure.querySelector(".plot");
      if (!make || !target) { return; }
      var series = [{}];
      var columns = [data.x];
      data.series.forEach(function (s, i) {
        make(s).forEach(function (line) {
          series.push({
            label: line[0],
            stroke: COLORS[i % COLORS.length],
            width: 1.5,
            dash: line[2] ? [5, 4] : undefined,
            spanGaps: false,
            points: { show: data.x.length <= 60 }
          });
          columns.push(line[1]);
        });
      });
      var width = Math.max(280, target.clientWidth || figure.clientWidth - 32);
      target.innerHTML = "";
      new uPlot({
        width: width,
        height: 220,
        series: series,
        scales: { x: { time: true } },
        axes: [{}, { size: 72 }],
        legend: { live: true }
      }, columns, target);
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
