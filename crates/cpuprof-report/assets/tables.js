// Sortable tables of processes and threads. Clicking a row shows its flamegraph.
var Tables = (function () {
  function table(container, cols, rows, onRow) {
    var t = el('table', 'sortable'), thead = el('thead'), tr = el('tr'), tbody = el('tbody');
    var sortCol = cols.findIndex(function (c) { return c.sort; }), desc = true;
    cols.forEach(function (c, i) {
      var th = el('th', c.num ? 'num' : null, c.title);
      th.title = c.help || 'sort by ' + c.title;
      th.addEventListener('click', function () {
        if (sortCol === i) desc = !desc; else { sortCol = i; desc = !!c.num; }
        render();
      });
      tr.appendChild(th);
    });
    thead.appendChild(tr); t.appendChild(thead); t.appendChild(tbody);
    container.appendChild(t);
    function render() {
      var c = cols[sortCol];
      rows.sort(function (a, b) {
        var x = c.key(a), y = c.key(b), r = x < y ? -1 : x > y ? 1 : 0;
        return desc ? -r : r;
      });
      Array.prototype.forEach.call(thead.firstChild.children, function (th, i) {
        if (i === sortCol) th.setAttribute('aria-sort', desc ? 'descending' : 'ascending');
        else th.removeAttribute('aria-sort');
      });
      tbody.textContent = '';
      rows.forEach(function (r) {
        var row = el('tr');
        cols.forEach(function (c) {
          var td = el('td', c.num ? 'num' : c.cls, c.show ? c.show(r) : c.key(r));
          if (c.cls === 'cmd') td.title = c.key(r);
          row.appendChild(td);
        });
        row.addEventListener('click', function () { onRow(r); });
        tbody.appendChild(row);
      });
    }
    render();
    return t;
  }
  function wall(x) { return Math.max(0, x.end - x.start); }
  function init() {
    var s = function (k) { return function (r) { return fmtNum(r[k]); }; };
    table(document.getElementById('proc-table'), [
      { title: 'PID', key: function (p) { return p.pid; }, num: true },
      { title: 'command', key: function (p) { return p.cmd; }, cls: 'cmd' },
      { title: 'CPU s', key: function (p) { return p.cpu; }, show: s('cpu'), num: true, sort: true },
      { title: 'user s', key: function (p) { return p.user; }, show: s('user'), num: true },
      { title: 'sys s', key: function (p) { return p.sys; }, show: s('sys'), num: true },
      { title: 'wall s', key: wall, show: function (p) { return fmtNum(wall(p)); }, num: true },
      { title: 'run-queue s', key: function (p) { return p.runq; }, show: s('runq'), num: true, help: 'time its threads were runnable but waited for a core' },
      { title: 'threads', key: function (p) { return p.lanes.length; }, num: true },
      { title: 'runtimes', key: function (p) {
        return p.runtimes.map(function (r) { return r.name; }).join(', ');
      } }
    ], D.procs.slice(), function (p) { Flame.setScope('p:' + p.pid); document.getElementById('flame-section').scrollIntoView(); });
    table(document.getElementById('thread-table'), [
      { title: 'PID', key: function (l) { return l.pid; }, num: true },
      { title: 'TID', key: function (l) { return l.tid; }, num: true },
      { title: 'name', key: function (l) { return l.name; } },
      { title: 'role', key: function (l) { return l.role || ''; } },
      { title: 'runtime', key: function (l) { return l.runtime || ''; } },
      { title: 'CPU s', key: function (l) { return l.cpu; }, show: s('cpu'), num: true, sort: true },
      { title: 'user s', key: function (l) { return l.user; }, show: s('user'), num: true },
      { title: 'sys s', key: function (l) { return l.sys; }, show: s('sys'), num: true },
      { title: 'wall s', key: wall, show: function (l) { return fmtNum(wall(l)); }, num: true },
      { title: 'run-queue s', key: function (l) { return l.runq; }, show: s('runq'), num: true },
      { title: 'preempted', key: function (l) { return l.ivcsw; }, num: true, help: 'involuntary context switches' },
      { title: 'blocked', key: function (l) { return l.vcsw; }, num: true, help: 'voluntary context switches' }
    ], D.lanes.slice(), function (l) { Flame.setScope('t:' + l.index); document.getElementById('flame-section').scrollIntoView(); });
  }
  return { init: init };
})();
