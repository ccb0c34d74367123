// The flamegraph, built in the page from aggregated stacks: all threads, one process, one
// thread, and/or the time range selected on the timeline. Root at the top; process and
// thread are the first two levels. Click a frame to zoom, search to highlight.
var Flame = (function () {
  var F = D.flame;
  var canvas = document.getElementById('flame');
  var scopeSel = document.getElementById('flame-scope');
  var rangeBox = document.getElementById('flame-range');
  var search = document.getElementById('flame-search');
  var info = document.getElementById('flame-info');
  var ROW = 17;
  var spin = {};
  F.spin.forEach(function (i) { spin[i] = true; });
  var PROC_BY_PID = {};
  D.procs.forEach(function (p) { PROC_BY_PID[p.pid] = p; });
  var paths = {};            // node -> frame ids, root first
  var tree = null, focus = null, flat = [], maxDepth = 0, matchRe = null, matched = 0;
  var state = { drawn: 0, total: 0, matched: 0 };

  function path(n) {
    if (n < 0) return [];
    var p = paths[n];
    if (p) return p;
    var out = [], cur = n;
    while (cur >= 0) { out.push(F.frame[cur]); cur = F.parent[cur]; }
    out.reverse();
    paths[n] = out;
    return out;
  }

  function newNode(name, kind, parent) {
    return { name: name, kind: kind, value: 0, self: 0, children: {}, list: null, parent: parent, x: 0, depth: parent ? parent.depth + 1 : 0 };
  }
  function child(node, key, name, kind) {
    var c = node.children[key];
    if (!c) { c = newNode(name, kind, node); node.children[key] = c; }
    return c;
  }

  function bucketRange() {
    if (!rangeBox.checked || !SEL) return [0, F.n - 1];
    var a = Math.floor(SEL.t0 / F.dt), b = Math.floor(SEL.t1 / F.dt);
    // Buckets mostly inside the selection; at least the one it starts in.
    if ((a + 1) * F.dt - SEL.t0 < F.dt / 2 && a < b) a++;
    if (SEL.t1 - b * F.dt < F.dt / 2 && b > a) b--;
    return [Math.max(0, a), Math.min(F.n - 1, b)];
  }

  function build() {
    var scope = scopeSel.value, lanesOk = null;
    if (scope[0] === 'p') {
      lanesOk = {};
      var pid = +scope.slice(2);
      D.procs.forEach(function (p) { if (p.pid === pid) p.lanes.forEach(function (li) { lanesOk[li] = true; }); });
    } else if (scope[0] === 't') {
      lanesOk = {}; lanesOk[+scope.slice(2)] = true;
    }
    var br = bucketRange();
    tree = newNode('all', 'root', null);
    var b = 0;
    for (var i = 0; i < F.eb.length; i++) {
      b += F.eb[i];
      if (b < br[0] || b > br[1]) continue;
      var li = F.el[i];
      if (lanesOk && !lanesOk[li]) continue;
      var c = F.ec[i], lane = D.lanes[li];
      var procNode = PROC_BY_PID[lane.pid];
      var node = child(tree, 'p' + lane.pid, procNode ? procNode.label : String(lane.pid), 'proc');
      node = child(node, 't' + li, lane.label, 'thread');
      tree.value += c;
      node.parent.value += c;
      node.value += c;
      var fr = path(F.en[i]);
      if (fr.length === 0) { node = child(node, 'u', '[unknown]', 'n'); node.value += c; }
      for (var j = 0; j < fr.length; j++) {
        node = child(node, fr[j], F.labels[fr[j]], F.kinds.charAt(fr[j]));
        node.frame = fr[j];
        node.value += c;
      }
      node.self += c;
    }
    focus = tree;
    layout();
    var secs = D.sample_s ? ' (' + fmtS(tree.value * D.sample_s) + ' of CPU)' : '';
    var range = (rangeBox.checked && SEL) ? ' · ' + fmtS(br[0] * F.dt) + ' – ' + fmtS((br[1] + 1) * F.dt) : '';
    state.total = tree.value;
    info.textContent = tree.value + ' samples' + secs + range + (D.sample_source === 'python' ? ' · Python sampler (perf unavailable)' : '');
    draw();
  }

  // Children sorted by name (as flamegraphs do), x in sample units.
  function layout() {
    flat = []; maxDepth = 0;
    (function walk(n, x) {
      n.x = x;
      flat.push(n);
      if (n.depth > maxDepth) maxDepth = n.depth;
      var keys = Object.keys(n.children);
      n.list = keys.map(function (k) { return n.children[k]; });
      n.list.sort(function (a, b) { return a.name < b.name ? -1 : a.name > b.name ? 1 : 0; });
      var cx = x;
      n.list.forEach(function (c) { walk(c, cx); cx += c.value; });
    })(tree, 0);
  }

  function isAncestor(a, n) { while (n) { if (n === a) return true; n = n.parent; } return false; }

  function color(n) {
    if (matchRe && matchRe.test(n.name)) return COLORS.match;
    if (n.kind === 'root') return '#d9d9d9';
    if (n.kind === 'proc' || n.kind === 'thread') return '#cfd8e3';
    var h = 0;
    for (var i = 0; i < n.name.length && i < 24; i++) h = (h * 31 + n.name.charCodeAt(i)) >>> 0;
    var v = (h % 1000) / 1000;
    if (n.kind === 'p') return 'hsl(' + (195 + v * 20).toFixed(0) + ',70%,' + (70 + v * 12).toFixed(0) + '%)';
    if (n.kind === 'k') return 'hsl(0,0%,' + (72 + v * 12).toFixed(0) + '%)';
    return 'hsl(' + (40 + v * 18).toFixed(0) + ',85%,' + (62 + v * 14).toFixed(0) + '%)';
  }

  var geom = null;
  function draw() {
    var h = (maxDepth + 1) * ROW + 2;
    var g = fitCanvas(canvas, Math.max(h, 60));
    var ctx = g.ctx, w = g.w;
    ctx.clearRect(0, 0, w, g.h);
    geom = { w: w };
    state.drawn = 0;
    matched = 0;
    var fx = focus.x, fv = Math.max(focus.value, 1e-9), scale = w / fv;
    ctx.font = '11px ui-monospace, "DejaVu Sans Mono", monospace';
    ctx.textBaseline = 'middle';
    if (tree.value === 0) {
      ctx.fillStyle = COLORS.axis;
      ctx.fillText('No stack samples in this selection.', 8, 20);
      return;
    }
    for (var i = 0; i < flat.length; i++) {
      var n = flat[i], x, wd;
      if (isAncestor(n, focus) && n !== focus) { x = 0; wd = w; }
      else {
        if (n.x + n.value <= fx || n.x >= fx + fv) continue;
        if (!isAncestor(focus, n)) continue;
        x = (n.x - fx) * scale; wd = n.value * scale;
      }
      if (wd < 0.5) continue;
      var y = n.depth * ROW;
      ctx.fillStyle = color(n);
      ctx.fillRect(x, y, Math.max(wd - 0.5, 0.5), ROW - 1);
      // A wait loop's own time (the part of it with nothing above) is CPU burned spinning.
      if (n.frame !== undefined && spin[n.frame] && n.self > 0 && !(matchRe && matchRe.test(n.name))) {
        var sw = n.self * (wd / n.value);
        ctx.fillStyle = COLORS.spin;
        ctx.fillRect(x + wd - sw, y, Math.max(sw - 0.5, 0.5), ROW - 1);
      }
      state.drawn++;
      if (wd > 24) {
        ctx.fillStyle = '#111';
        var label = n.name, maxChars = Math.floor((wd - 6) / 6.6);
        if (label.length > maxChars) label = label.slice(0, Math.max(0, maxChars - 1)) + '…';
        ctx.fillText(label, x + 3, y + ROW / 2);
      }
    }
    if (matchRe) {
      (function walk(n, under) {
        var m = !under && matchRe.test(n.name);
        if (m) matched += n.value;
        n.list.forEach(function (c) { walk(c, under || m); });
      })(tree, false);
      state.matched = matched;
      document.getElementById('flame-match').textContent = 'matched ' + pct(matched / Math.max(1, tree.value)) + ' of samples';
    } else {
      document.getElementById('flame-match').textContent = '';
    }
  }

  function hit(ev) {
    var r = canvas.getBoundingClientRect();
    var px = ev.clientX - r.left, py = ev.clientY - r.top;
    var depth = Math.floor(py / ROW);
    var fx = focus.x, fv = Math.max(focus.value, 1e-9), scale = geom.w / fv;
    for (var i = 0; i < flat.length; i++) {
      var n = flat[i];
      if (n.depth !== depth) continue;
      if (isAncestor(n, focus)) { if (n === focus || n.depth < focus.depth) return n; continue; }
      if (!isAncestor(focus, n)) continue;
      var x = (n.x - fx) * scale, wd = n.value * scale;
      if (px >= x && px < x + wd) return n;
    }
    return null;
  }

  canvas.addEventListener('mousemove', function (ev) {
    if (!tree) return;
    var n = hit(ev);
    if (!n) { hideTip(); return; }
    var share = n.value / Math.max(1, tree.value);
    var cpu = D.sample_s ? ', ' + fmtS(n.value * D.sample_s) + ' CPU' : '';
    var spinTxt = (n.frame !== undefined && spin[n.frame]) ? '\nruntime wait loop (spin-waiting burns CPU without work)' : '';
    var file = n.frame !== undefined && F.files && F.files[n.frame] ? '\n' + F.files[n.frame] : '';
    showTip(ev, n.name + file + '\n' + n.value + ' samples (' + pct(share) + cpu + '), self ' + n.self + spinTxt);
  });
  canvas.addEventListener('mouseleave', hideTip);
  canvas.addEventListener('click', function (ev) {
    var n = hit(ev);
    if (!n) return;
    focus = n.kind === 'root' ? tree : n;
    draw();
  });
  document.getElementById('flame-reset').addEventListener('click', function () { focus = tree; draw(); });
  scopeSel.addEventListener('change', build);
  rangeBox.addEventListener('change', build);
  search.addEventListener('input', function () {
    var q = search.value.trim();
    if (!q) matchRe = null;
    else {
      try { matchRe = new RegExp(q, 'i'); } catch (e) { matchRe = new RegExp(q.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'i'); }
    }
    draw();
  });

  function init() {
    var all = el('option', null, 'all threads'); all.value = 'all'; scopeSel.appendChild(all);
    D.procs.forEach(function (p) {
      var o = el('option', null, 'process ' + p.label); o.value = 'p:' + p.pid; scopeSel.appendChild(o);
      p.lanes.forEach(function (li) {
        var o2 = el('option', null, '\u00a0\u00a0thread ' + D.lanes[li].label); o2.value = 't:' + li; scopeSel.appendChild(o2);
      });
    });
    onChange('sel', function () {
      rangeBox.checked = !!SEL;
      rangeBox.disabled = !SEL;
      build();
    });
    rangeBox.disabled = true;
    window.addEventListener('resize', function () { if (tree) draw(); });
    build();
  }
  function setScope(v) { scopeSel.value = v; build(); }

  return { init: init, state: state, setScope: setScope };
})();
