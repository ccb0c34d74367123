// cpuprof report: shared state and helpers. Everything from the profile is inserted with
// textContent or drawn on a canvas, never parsed as HTML.
var T_START = performance.now();
var SELFTEST = location.hash === '#selftest';
var ERRORS = [];
window.addEventListener('error', function (e) {
  ERRORS.push(String(e.message || e.type) + (e.lineno ? ' @' + e.lineno : ''));
});
(function () {
  var orig = console.error;
  console.error = function () {
    ERRORS.push(Array.prototype.map.call(arguments, String).join(' '));
    return orig.apply(console, arguments);
  };
})();

var D = JSON.parse(document.getElementById('cpuprof-data').textContent);
var COLORS = {
  run: '#0072B2', wait: '#E69F00', sleep: '#e6e6e6', budget: '#D55E00', spin: '#CC79A7',
  match: '#009E73', axis: '#5f5f5f', grid: '#ececec', sel: 'rgba(0,114,178,0.12)', selEdge: '#0072B2'
};

function el(tag, cls, text) {
  var e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function fmtS(s) {
  if (s === null || s === undefined || isNaN(s)) return '–';
  var a = Math.abs(s);
  if (a >= 3600) return (s / 3600).toFixed(2) + ' h';
  if (a >= 100) return s.toFixed(0) + ' s';
  if (a >= 10) return s.toFixed(1) + ' s';
  if (a >= 1) return s.toFixed(2) + ' s';
  if (a >= 0.001) return (s * 1000).toFixed(a >= 0.1 ? 0 : 1) + ' ms';
  if (a === 0) return '0 s';
  return (s * 1e6).toFixed(0) + ' µs';
}
function fmtNum(x, d) { return (x === null || x === undefined) ? '–' : Number(x).toFixed(d === undefined ? 2 : d); }
function pct(x) { return (100 * x).toFixed(x < 0.1 ? 1 : 0) + '%'; }

function b64bytes(s) {
  var bin = atob(s), a = new Uint8Array(bin.length);
  for (var i = 0; i < bin.length; i++) a[i] = bin.charCodeAt(i);
  return a;
}

// Prefix sums so the average over any (fractional) bucket range is O(1).
function prefix(values) {
  var p = new Float64Array(values.length + 1);
  for (var i = 0; i < values.length; i++) p[i + 1] = p[i] + values[i];
  return p;
}
// Sum of values over bucket positions [a, b) (fractional), from prefix sums p of values that
// start at bucket `off` (lanes ship only the buckets of their thread's life).
function rangeSum(p, a, b, off) {
  if (off) { a -= off; b -= off; }
  var n = p.length - 1;
  function at(x) {
    if (x <= 0) return 0;
    if (x >= n) return p[n];
    var i = Math.floor(x);
    return p[i] + (x - i) * (p[i + 1] - p[i]);
  }
  return at(b) - at(a);
}

var tooltip = document.getElementById('tooltip');
function showTip(ev, text) {
  tooltip.textContent = text;
  tooltip.hidden = false;
  var x = ev.clientX + 14, y = ev.clientY + 14;
  var r = tooltip.getBoundingClientRect();
  if (x + r.width > window.innerWidth - 4) x = Math.max(4, ev.clientX - r.width - 14);
  if (y + r.height > window.innerHeight - 4) y = Math.max(4, ev.clientY - r.height - 14);
  tooltip.style.left = x + 'px';
  tooltip.style.top = y + 'px';
}
function hideTip() { tooltip.hidden = true; }

// A canvas sized to its CSS box at the device pixel ratio (sharp when the page is zoomed).
function fitCanvas(c, cssHeight) {
  var dpr = window.devicePixelRatio || 1;
  var w = Math.max(1, c.clientWidth);
  var h = cssHeight || Math.max(1, c.clientHeight);
  if (cssHeight) c.style.height = cssHeight + 'px';
  var W = Math.round(w * dpr), H = Math.round(h * dpr);
  if (c.width !== W) c.width = W;
  if (c.height !== H) c.height = H;
  var ctx = c.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return { ctx: ctx, w: w, h: h };
}

// Lanes decoded once.
D.lanes.forEach(function (l, i) {
  l.index = i;
  var run = b64bytes(l.run), wait = b64bytes(l.wait);
  var r = new Float32Array(run.length), w = new Float32Array(wait.length);
  for (var k = 0; k < run.length; k++) { r[k] = run[k] / 255; w[k] = wait[k] / 255; }
  l.runP = prefix(r); l.waitP = prefix(w); l.off = l.b0 || 0;
  l.label = (l.name || '?') + ' (' + l.tid + ')';
  l.roleText = l.runtime ? l.runtime + ' ' + (l.role || '') : (l.role || '');
});
D.procs.forEach(function (p) {
  var n = D.tl.n, r = new Float64Array(n), w = new Float64Array(n);
  p.lanes.forEach(function (li) {
    var l = D.lanes[li], len = l.runP.length - 1;
    for (var k = 0; k < len && k + l.off < n; k++) {
      r[k + l.off] += l.runP[k + 1] - l.runP[k];
      w[k + l.off] += l.waitP[k + 1] - l.waitP[k];
    }
  });
  p.runP = prefix(r); p.waitP = prefix(w);
  var peak = 0;
  for (var k = 0; k < n; k++) peak = Math.max(peak, r[k] + w[k]);
  p.peak = peak;
  p.label = p.name + ' (' + p.pid + ')';
});
(function () {
  var n = D.tl.n, r = new Float64Array(n), w = new Float64Array(n), peak = 0;
  D.procs.forEach(function (p) {
    for (var k = 0; k < n; k++) {
      r[k] += p.runP[k + 1] - p.runP[k];
      w[k] += p.waitP[k + 1] - p.waitP[k];
    }
  });
  for (var k = 0; k < n; k++) peak = Math.max(peak, r[k] + w[k]);
  D.total = { runP: prefix(r), waitP: prefix(w), peak: peak };
})();
var FLAGGED = {};
D.findings.forEach(function (f) {
  (f.tids || []).forEach(function (t) { FLAGGED['t' + t] = true; });
  (f.pids || []).forEach(function (p) { FLAGGED['p' + p] = true; });
});

// Shared view: the visible time range and the selection (seconds).
var VIEW = { t0: 0, t1: Math.max(D.wall, 1e-9) };
var SEL = null;
var listeners = { view: [], sel: [] };
function onChange(kind, f) { listeners[kind].push(f); }
function emit(kind) { listeners[kind].forEach(function (f) { f(); }); }
