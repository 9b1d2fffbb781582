// Vigil's console: the one script of its own (the CSP allows no inline script).
// Graphs: an element <div class="graph" data-graph="ID"> is drawn by cytoscape from the JSON in
// <script type="application/json" id="ID"> ({"nodes": [{id, label, kind, ...}], "edges":
// [{source, target, label}]}), again whenever htmx swaps new content in.
(function () {
  "use strict";

  var COLOURS = {
    host: "#2f6fed", user: "#8e44ad", identity: "#8e44ad", ip: "#16a085", process: "#d35400",
    file: "#7f8c8d", domain: "#27ae60", url: "#27ae60", hash: "#95a5a6", alert: "#e0561b",
    incident: "#b3132b", jewel: "#b3132b", cloud: "#0e7c86", data: "#c0392b", software: "#7f8c8d"
  };

  function draw(element) {
    if (element.dataset.drawn || typeof window.cytoscape !== "function") { return; }
    var source = document.getElementById(element.dataset.graph);
    if (!source) { return; }
    var data = JSON.parse(source.textContent || "{}");
    var elements = [];
    (data.nodes || []).forEach(function (node) {
      elements.push({ group: "nodes", data: node, classes: (node.classes || []).join(" ") });
    });
    (data.edges || []).forEach(function (edge, i) {
      elements.push({ group: "edges", data: Object.assign({ id: "e" + i }, edge),
                      classes: (edge.classes || []).join(" ") });
    });
    element.dataset.drawn = "1";
    var graph = window.cytoscape({
      container: element,
      elements: elements,
      layout: { name: data.layout || "cose", animate: false, padding: 20,
                directed: true, nodeDimensionsIncludeLabels: true },
      style: [
        { selector: "node", style: {
            "font-size": 10, "text-valign": "bottom", "text-margin-y": 3,
            "background-color": function (n) { return COLOURS[n.data("kind")] || "#5d6b82"; },
            "width": 18, "height": 18, "color": "#1d2330",
            "text-wrap": "ellipsis", "text-max-width": 140 } },
        { selector: "node[label]", style: { "label": "data(label)" } },
        { selector: "node.jewel", style: { "shape": "star", "width": 28, "height": 28,
            "background-color": COLOURS.jewel } },
        { selector: "node.start", style: { "border-width": 3, "border-color": "#e0561b" } },
        { selector: "node.focus", style: { "border-width": 3, "border-color": "#1d2330" } },
        { selector: "edge", style: {
            "width": 1.5, "line-color": "#aab3c5", "target-arrow-color": "#aab3c5",
            "target-arrow-shape": "triangle", "curve-style": "bezier" } },
        { selector: "edge[label]", style: {
            "label": "data(label)", "font-size": 8, "color": "#6b7385",
            "text-rotation": "autorotate" } },
        { selector: "edge.path", style: { "line-color": "#b3132b", "target-arrow-color": "#b3132b",
            "width": 3 } }
      ]
    });
    graph.on("tap", "node", function (event) {
      var href = event.target.data("href");
      if (href) { window.location.assign(href); }
    });
  }

  function drawAll(root) {
    (root || document).querySelectorAll(".graph[data-graph]").forEach(draw);
  }

  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  document.addEventListener("htmx:load", function (event) { drawAll(event.target); });
})();
