// Start-up, copy buttons, and the self-test (#selftest) that headless tests read from the DOM.
function copyText(text, button) {
  function done(ok) {
    var old = button.dataset.label || button.textContent;
    button.dataset.label = old;
    button.textContent = ok ? 'copied' : 'select and copy';
    setTimeout(function () { button.textContent = old; }, 1500);
  }
  if (navigator.clipboard && navigator.clipboard.writeText) {
    navigator.clipboard.writeText(text).then(function () { done(true); }, function () { fallback(); });
  } else fallback();
  function fallback() {
    var ta = el('textarea');
    ta.value = text; ta.style.position = 'fixed'; ta.style.opacity = '0';
    document.body.appendChild(ta); ta.select();
    var ok = false;
    try { ok = document.execCommand('copy'); } catch (e) { ok = false; }
    document.body.removeChild(ta);
    done(ok);
  }
}
Array.prototype.forEach.call(document.querySelectorAll('button.copy'), function (b) {
  b.addEventListener('click', function () {
    var pre = document.getElementById(b.dataset.target);
    if (pre) copyText(pre.textContent, b);
  });
});

var INIT_MS = 0;
function selftest() {
  function size(e) { if (!e) return null; var r = e.getBoundingClientRect(); return { w: r.width, h: r.height }; }
  function visibleThreads() {
    return Array.prototype.filter.call(document.querySelectorAll('.tl-thread'), function (r) { return r.offsetParent !== null; }).length;
  }
  var out = { errors: ERRORS, checks: {} };
  var c = out.checks;
  c.init_ms = Math.round(INIT_MS);
  c.load_ms = Math.round(performance.now() - T_START);
  c.timeline = size(document.getElementById('timeline'));
  c.cores_canvas = size(document.querySelector('.tl-cores canvas'));
  c.flame = size(document.getElementById('flame'));
  c.flame_drawn = Flame.state.drawn;
  c.flame_samples = Flame.state.total;
  c.processes = document.querySelectorAll('.tl-proc').length;
  c.thread_rows = document.querySelectorAll('.tl-thread').length;
  // Collapse everything, then click the first process lane.
  document.getElementById('tl-collapse').click();
  c.threads_visible_before = visibleThreads();
  var lab = document.querySelector('.tl-proc .tl-label');
  if (lab) lab.click();
  c.threads_visible_after = visibleThreads();
  var t = performance.now();
  Timeline.setView(D.wall * 0.25, D.wall * 0.5);
  Timeline.setView(0, D.wall);
  c.timeline_redraw_ms = Math.round((performance.now() - t) / 2);
  t = performance.now();
  Flame.setScope('all');
  c.flame_build_ms = Math.round(performance.now() - t);
  // Drag across the cores chart from 20% to 60%: a selection, and the flamegraph follows it.
  var cv = document.querySelector('.tl-cores canvas'), cr = cv.getBoundingClientRect();
  function mouse(type, target, f) {
    target.dispatchEvent(new MouseEvent(type, { bubbles: true, cancelable: true, button: 0,
      clientX: cr.left + cr.width * f, clientY: cr.top + cr.height / 2 }));
  }
  var allSamples = Flame.state.total;
  mouse('mousedown', cv, 0.2);
  mouse('mousemove', window, 0.6);
  mouse('mouseup', window, 0.6);
  c.selection = SEL ? [SEL.t0, SEL.t1] : null;
  c.flame_all_samples = allSamples;
  c.flame_range_samples = Flame.state.total;
  // Wheel up over the middle zooms in.
  cv.dispatchEvent(new WheelEvent('wheel', { bubbles: true, cancelable: true, deltaY: -100,
    clientX: cr.left + cr.width / 2, clientY: cr.top + cr.height / 2 }));
  c.zoomed_span = VIEW.t1 - VIEW.t0;
  c.wall = D.wall;
  // Search paints matches and reports their share.
  var q = document.getElementById('flame-search');
  q.value = '.';
  q.dispatchEvent(new Event('input'));
  c.search_matched = Flame.state.matched;
  q.value = '';
  q.dispatchEvent(new Event('input'));
  document.getElementById('tl-clearsel').click();
  Timeline.setView(0, D.wall);
  c.thread_canvas = size(document.querySelector('.tl-thread:not(.hidden) canvas'));
  c.thread_labels = Array.prototype.map.call(document.querySelectorAll('.tl-thread .tname'), function (e) { return e.textContent; });
  c.process_commands = D.procs.map(function (p) { return p.cmd; });
  c.header_command = (document.querySelector('h1 code') || {}).textContent;
  // Nothing from the target may become markup: the page itself uses none of these elements.
  c.injected_elements = document.querySelectorAll('b, i, img, iframe, object, embed, svg, form, a').length;
  c.scripts = document.scripts.length;
  c.table_rows = document.querySelectorAll('#thread-table tbody tr').length;
  var pre = el('pre', null, JSON.stringify(out));
  pre.id = 'selftest-result';
  pre.hidden = true;
  document.body.appendChild(pre);
}

var T0 = performance.now();
try {
  Timeline.build();
  Flame.init();
  Tables.init();
} catch (e) {
  ERRORS.push('init: ' + (e && e.stack ? e.stack : e));
  throw e;
} finally {
  INIT_MS = performance.now() - T0;
  if (SELFTEST) selftest();
}
