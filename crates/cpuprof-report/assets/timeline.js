// The timeline: a shared time axis, the cores-busy curve against the CPU budget, one lane per
// process (click to expand) and one per thread. Running / waiting for a core / sleeping.
var Timeline = (function () {
  var root = document.getElementById('timeline');
  var rows = [];   // {kind, canvas, draw(ctx,w,h), tip(t)} for every row
  var AXIS_H = 22;

  function timeAt(canvas, clientX) {
    var r = canvas.getBoundingClientRect();
    var f = Math.min(1, Math.max(0, (clientX - r.left) / Math.max(1, r.width)));
    return VIEW.t0 + f * (VIEW.t1 - VIEW.t0);
  }

  function niceStep(span, px) {
    var target = span / Math.max(1, px / 90);
    var p = Math.pow(10, Math.floor(Math.log10(target)));
    var steps = [1, 2, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * p >= target) return steps[i] * p;
    return 10 * p;
  }

  function drawGrid(ctx, w, h, labels) {
    var span = VIEW.t1 - VIEW.t0, step = niceStep(span, w);
    ctx.strokeStyle = COLORS.grid; ctx.fillStyle = COLORS.axis; ctx.lineWidth = 1;
    ctx.font = '11px system-ui, sans-serif'; ctx.textBaseline = 'middle';
    for (var t = Math.ceil(VIEW.t0 / step) * step; t <= VIEW.t1; t += step) {
      var x = Math.round((t - VIEW.t0) / span * w) + 0.5;
      if (labels) {
        ctx.beginPath(); ctx.moveTo(x, h - 6); ctx.lineTo(x, h); ctx.stroke();
        ctx.fillText(fmtS(t), Math.min(x + 3, w - 40), h / 2 - 2);
      } else {
        ctx.beginPath(); ctx.moveTo(x, 0); ctx.lineTo(x, h); ctx.stroke();
      }
    }
  }

  function drawSel(ctx, w, h) {
    if (!SEL) return;
    var span = VIEW.t1 - VIEW.t0;
    var x0 = (SEL.t0 - VIEW.t0) / span * w, x1 = (SEL.t1 - VIEW.t0) / span * w;
    ctx.fillStyle = COLORS.sel; ctx.fillRect(x0, 0, Math.max(1, x1 - x0), h);
    ctx.strokeStyle = COLORS.selEdge; ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(x0, 0); ctx.lineTo(x0, h); ctx.moveTo(x1, 0); ctx.lineTo(x1, h); ctx.stroke();
  }

  // Bucket position of time t.
  function pos(t) { return t / D.tl.dt; }

  // Average of running and waiting (cores) over the pixel column [x, x+1).
  function column(src, x, w) {
    var span = VIEW.t1 - VIEW.t0;
    var a = pos(VIEW.t0 + x / w * span), b = pos(VIEW.t0 + (x + 1) / w * span);
    var len = Math.max(b - a, 1e-12);
    return [rangeSum(src.runP, a, b, src.off) / len, rangeSum(src.waitP, a, b, src.off) / len];
  }

  // Stacked running + waiting areas scaled to `scale` cores over the lane's height.
  function drawStates(ctx, w, h, src, scale, alive) {
    var span = VIEW.t1 - VIEW.t0;
    for (var x = 0; x < w; x++) {
      var t0 = VIEW.t0 + x / w * span, t1 = VIEW.t0 + (x + 1) / w * span;
      if (alive && (t1 <= alive[0] || t0 >= alive[1])) continue;
      var c = column(src, x, w);
      if (alive) { ctx.fillStyle = COLORS.sleep; ctx.fillRect(x, 1, 1, h - 1); }
      var hr = Math.min(h, c[0] / scale * h), hw = Math.min(h - hr, c[1] / scale * h);
      if (hr > 0.05) { ctx.fillStyle = COLORS.run; ctx.fillRect(x, h - hr, 1, hr); }
      if (hw > 0.05) { ctx.fillStyle = COLORS.wait; ctx.fillRect(x, h - hr - hw, 1, hw); }
    }
  }

  function budgetLine(ctx, w, h, scale, label) {
    var y = Math.round(h - D.budget / scale * h) + 0.5;
    if (y < 0) return;
    ctx.save();
    ctx.strokeStyle = COLORS.budget; ctx.lineWidth = 1.5; ctx.setLineDash([5, 3]);
    ctx.beginPath(); ctx.moveTo(0, y); ctx.lineTo(w, y); ctx.stroke();
    ctx.restore();
    if (label) {
      ctx.fillStyle = COLORS.budget; ctx.font = '11px system-ui, sans-serif'; ctx.textBaseline = 'bottom';
      ctx.fillText('budget ' + fmtNum(D.budget, D.budget % 1 ? 2 : 0) + ' cores', 4, y - 1);
    }
  }

  function valuesAt(src, t) {
    var b = pos(t), span = VIEW.t1 - VIEW.t0;
    var px = span / 400 / D.tl.dt; // average over a few pixels' worth of buckets
    var a = Math.max(0, b - Math.max(px, 0.5)), c = b + Math.max(px, 0.5);
    return [rangeSum(src.runP, a, c, src.off) / (c - a), rangeSum(src.waitP, a, c, src.off) / (c - a)];
  }

  function addRow(kind, parent, label, h, draw, tip) {
    var row = el('div', 'tl-row tl-' + kind);
    row.appendChild(label || el('div', 'tl-label'));
    var c = el('canvas', 'tl-canvas');
    row.appendChild(c);
    parent.appendChild(row);
    var r = { kind: kind, row: row, canvas: c, h: h, draw: draw, tip: tip };
    rows.push(r);
    attach(r);
    return r;
  }

  var drag = null;
  function attach(r) {
    var c = r.canvas;
    c.addEventListener('mousedown', function (ev) {
      if (ev.button !== 0) return;
      drag = { canvas: c, t: timeAt(c, ev.clientX), x: ev.clientX };
      ev.preventDefault();
    });
    c.addEventListener('mousemove', function (ev) {
      if (drag) return;
      var t = timeAt(c, ev.clientX);
      if (r.tip) showTip(ev, 't = ' + fmtS(t) + '\n' + r.tip(t));
    });
    c.addEventListener('mouseleave', hideTip);
    c.addEventListener('wheel', function (ev) {
      ev.preventDefault();
      var t = timeAt(c, ev.clientX), f = ev.deltaY > 0 ? 1.25 : 0.8;
      zoomAround(t, f);
    }, { passive: false });
    c.addEventListener('dblclick', function () { setView(0, D.wall); });
  }
  window.addEventListener('mousemove', function (ev) {
    if (!drag) return;
    var t = timeAt(drag.canvas, ev.clientX);
    if (Math.abs(ev.clientX - drag.x) >= 3) {
      SEL = { t0: Math.min(t, drag.t), t1: Math.max(t, drag.t) };
      redraw();
    }
  });
  window.addEventListener('mouseup', function (ev) {
    if (!drag) return;
    if (Math.abs(ev.clientX - drag.x) < 3) { SEL = null; }
    drag = null;
    redraw();
    emit('sel');
  });

  function setView(t0, t1) {
    var minSpan = Math.max(D.tl.dt / 4, 1e-6);
    if (t1 - t0 < minSpan) { var m = (t0 + t1) / 2; t0 = m - minSpan / 2; t1 = m + minSpan / 2; }
    VIEW.t0 = Math.max(0, t0); VIEW.t1 = Math.min(Math.max(D.wall, 1e-9), t1);
    redraw();
    emit('view');
  }
  function zoomAround(t, f) {
    setView(t - (t - VIEW.t0) * f, t + (VIEW.t1 - t) * f);
  }

  function redraw() {
    rows.forEach(function (r) {
      if (r.row.offsetParent === null) return; // hidden
      var g = fitCanvas(r.canvas, r.h);
      g.ctx.clearRect(0, 0, g.w, g.h);
      r.draw(g.ctx, g.w, g.h);
      if (r.kind !== 'axis') drawSel(g.ctx, g.w, g.h);
    });
    var info = document.getElementById('tl-info');
    info.textContent = 'showing ' + fmtS(VIEW.t0) + ' – ' + fmtS(VIEW.t1) +
      (SEL ? ' · selected ' + fmtS(SEL.t0) + ' – ' + fmtS(SEL.t1) + ' (' + fmtS(SEL.t1 - SEL.t0) + ')' : '');
  }

  function procLabel(p) {
    var lab = el('div', 'tl-label');
    lab.tabIndex = 0;
    lab.setAttribute('role', 'button');
    lab.setAttribute('aria-expanded', 'false');
    lab.appendChild(el('span', 'twisty', '▸'));
    lab.appendChild(el('span', 'pname', p.label));
    if (FLAGGED['p' + p.pid]) lab.appendChild(el('span', 'badge flag', 'finding'));
    lab.title = p.cmd + '\n' + p.lanes.length + ' threads · CPU ' + fmtS(p.cpu) + ' · run-queue wait ' + fmtS(p.runq);
    return lab;
  }

  function threadLabel(l) {
    var lab = el('div', 'tl-label');
    lab.appendChild(el('span', 'tname', l.label));
    if (l.roleText) lab.appendChild(el('span', 'badge', l.roleText));
    lab.title = l.label + (l.roleText ? ' — ' + l.roleText : '') + '\nCPU ' + fmtS(l.cpu) +
      ' · run-queue wait ' + fmtS(l.runq) + ' · states from ' + l.src + '\nclick: its flamegraph';
    lab.addEventListener('click', function () { Flame.setScope('t:' + l.index); });
    return lab;
  }

  function build() {
    var axisLabel = el('div', 'tl-label', 'time');
    addRow('axis', root, axisLabel, AXIS_H, function (ctx, w, h) { drawGrid(ctx, w, h, true); });
    var coresLabel = el('div', 'tl-label');
    coresLabel.appendChild(el('span', null, 'cores busy · waiting'));
    var coresScale = function () { return Math.max(D.budget, D.total.peak, 1) * 1.08; };
    addRow('cores', root, coresLabel, 96, function (ctx, w, h) {
      drawGrid(ctx, w, h, false);
      drawStates(ctx, w, h, D.total, coresScale(), null);
      budgetLine(ctx, w, h, coresScale(), true);
    }, function (t) {
      var v = valuesAt(D.total, t);
      return fmtNum(v[0]) + ' cores running, ' + fmtNum(v[1]) + ' threads waiting for a core\nbudget ' +
        fmtNum(D.budget) + ' cores' + (v[0] + v[1] > D.budget * 1.15 ? ' — oversubscribed' : '');
    });
    D.procs.forEach(function (p) {
      var lab = procLabel(p);
      var scale = function () { return Math.max(D.budget, p.peak, 1) * 1.05; };
      var alive = [p.start, p.end];
      var pr = addRow('proc', root, lab, 30, function (ctx, w, h) {
        drawGrid(ctx, w, h, false);
        drawStates(ctx, w, h, p, scale(), alive);
        budgetLine(ctx, w, h, scale(), false);
      }, function (t) {
        var v = valuesAt(p, t);
        return p.label + '\n' + fmtNum(v[0]) + ' cores running, ' + fmtNum(v[1]) + ' threads waiting for a core';
      });
      pr.row.dataset.pid = p.pid;
      var threadRows = [];
      p.lanes.forEach(function (li) {
        var l = D.lanes[li];
        var tr = addRow('thread', root, threadLabel(l), 20, function (ctx, w, h) {
          drawStates(ctx, w, h, l, 1, [l.start, l.end]);
        }, function (t) {
          if (t < l.start || t > l.end) return l.label + '\nnot alive';
          var v = valuesAt(l, t), s = Math.max(0, 1 - v[0] - v[1]);
          return l.label + (l.roleText ? ' — ' + l.roleText : '') + '\nrunning ' + pct(v[0]) +
            ', waiting for a core ' + pct(v[1]) + ', sleeping ' + pct(s) + '\n(from ' + l.src + ')';
        });
        tr.row.classList.add('hidden');
        tr.row.dataset.pid = p.pid;
        tr.row.dataset.tid = l.tid;
        threadRows.push(tr.row);
      });
      function toggle() {
        var open = lab.getAttribute('aria-expanded') !== 'true';
        setExpanded(lab, threadRows, open);
        redraw();
      }
      lab.addEventListener('click', toggle);
      lab.addEventListener('keydown', function (ev) {
        if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); toggle(); }
      });
      p.expand = function (open) { setExpanded(lab, threadRows, open); };
    });
    // Open the only process, or the ones a finding names, so the story shows at once.
    D.procs.forEach(function (p) {
      if (D.procs.length === 1 && p.lanes.length <= 64) p.expand(true);
    });
    document.getElementById('tl-reset').addEventListener('click', function () { setView(0, D.wall); });
    document.getElementById('tl-zoomsel').addEventListener('click', function () {
      if (SEL) setView(SEL.t0, SEL.t1);
    });
    document.getElementById('tl-clearsel').addEventListener('click', function () {
      SEL = null; redraw(); emit('sel');
    });
    document.getElementById('tl-expand').addEventListener('click', function () {
      D.procs.forEach(function (p) { p.expand(true); }); redraw();
    });
    document.getElementById('tl-collapse').addEventListener('click', function () {
      D.procs.forEach(function (p) { p.expand(false); }); redraw();
    });
    window.addEventListener('resize', redraw);
    redraw();
  }

  function setExpanded(lab, threadRows, open) {
    lab.setAttribute('aria-expanded', open ? 'true' : 'false');
    lab.firstChild.textContent = open ? '▾' : '▸';
    threadRows.forEach(function (r) { r.classList.toggle('hidden', !open); });
  }

  return { build: build, redraw: redraw, setView: setView };
})();
