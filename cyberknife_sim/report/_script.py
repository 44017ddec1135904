"""The report page's own script (plain JavaScript, no outside files): it draws each figure
spec with Plotly and, when a zoom of the decimated error trace shows at most ``max_points``
steps, swaps in every step of that window (and back on zooming out)."""

PAGE_JS = r"""
// cksim report: draw each figure spec (script.cks-fig) with Plotly; when a zoom of the
// decimated error trace shows few enough steps, show every step of it instead.
(function () {
  "use strict";
  function f32(b64) {
    var s = atob(b64), u = new Uint8Array(s.length);
    for (var i = 0; i < s.length; i++) { u[i] = s.charCodeAt(i); }
    return new Float32Array(u.buffer);
  }
  function lowerBound(a, v) {
    var lo = 0, hi = a.length;
    while (lo < hi) { var m = (lo + hi) >> 1; if (a[m] < v) { lo = m + 1; } else { hi = m; } }
    return lo;
  }
  function attachRaw(div, raw) {
    var rx = f32(raw.x), ry = f32(raw.y), k = raw.trace;
    var dec = {x: div.data[k].x, y: div.data[k].y};
    div.dataset.view = "decimated";
    div.on("plotly_relayout", function (ev) {
      var a = ev["xaxis.range[0]"], b = ev["xaxis.range[1]"];
      if (a === undefined && ev["xaxis.range"]) {
        a = ev["xaxis.range"][0]; b = ev["xaxis.range"][1];
      }
      var i0 = 0, i1 = 0, show = "decimated";
      if (a !== undefined && !ev["xaxis.autorange"]) {
        i0 = lowerBound(rx, a); i1 = lowerBound(rx, b);
        if (i1 - i0 <= raw.max_points) { show = "raw"; }
      }
      if (show === "decimated" && div.dataset.view === "decimated") { return; }
      div.dataset.view = show;
      if (show === "raw") {
        Plotly.restyle(div, {x: [rx.subarray(i0, i1)], y: [ry.subarray(i0, i1)],
                             name: raw.name}, [k]);
      } else {
        Plotly.restyle(div, {x: [dec.x], y: [dec.y], name: raw.decimated_name}, [k]);
      }
    });
  }
  var config = {responsive: true, displaylogo: false, scrollZoom: false,
                modeBarButtonsToRemove: ["select2d", "lasso2d"]};
  var specs = document.querySelectorAll("script.cks-fig");
  for (var i = 0; i < specs.length; i++) {
    var el = specs[i], spec = JSON.parse(el.textContent);
    var div = document.getElementById(el.getAttribute("data-div"));
    Plotly.newPlot(div, spec.data, spec.layout, config);
    if (spec.raw) { attachRaw(div, spec.raw); }
  }
  var pick = document.getElementById("event-kind");
  if (pick) {
    pick.addEventListener("change", function () {
      var rows = document.querySelectorAll("#events tbody tr");
      for (var j = 0; j < rows.length; j++) {
        var show = !pick.value || rows[j].className === "ev-" + pick.value;
        rows[j].style.display = show ? "" : "none";
      }
    });
  }
}());
"""
