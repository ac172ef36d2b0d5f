// knactor's status page: polls GET /v1/status once a second and renders it. Plain JavaScript,
// no build step. Every value from the server goes into the page as text (textContent), never
// as HTML: actor ids, messages and request ids are the callers'.
(function () {
  'use strict';

  const TOKEN_KEY = 'knactor-token';
  const POLL_MS = 1000;
  const $ = (id) => document.getElementById(id);
  const charts = new Map(); // function key → {el, plot}
  let pollTimer = null;

  const token = () => sessionStorage.getItem(TOKEN_KEY) || '';

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v;
      else if (k.startsWith('data-')) e.setAttribute(k, String(v));
      else e[k] = v;
    }
    for (const c of children) {
      if (c == null) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  const fmt = (n, digits) => (n == null || Number.isNaN(n) ? '–' : Number(n).toFixed(digits));
  const ms = (n) => (n > 0 ? (n >= 1000 ? (n / 1000).toFixed(2) + ' s' : n.toFixed(0) + ' ms') : '–');
  const keyOf = (f) => f.revision || f.function;
  const nameOf = (f) => (f.revision && f.function ? f.function + ' (' + f.revision + ')' : f.function || f.revision);

  function banner(text) {
    const b = $('banner');
    b.textContent = text || '';
    b.hidden = !text;
  }

  function showLogin(reason) {
    $('main').hidden = true;
    $('login').hidden = false;
    $('forget').hidden = true;
    $('source').textContent = 'token needed';
    if (reason) $('login-reason').textContent = reason;
    $('token').focus();
  }

  async function poll() {
    pollTimer = null;
    const headers = { Accept: 'application/json' };
    const t = token();
    if (t) headers.Authorization = 'Bearer ' + t;
    let resp;
    try {
      resp = await fetch('../v1/status', { headers, cache: 'no-store', credentials: 'omit' });
    } catch (e) {
      banner('The router does not answer (' + e.message + '); retrying.');
      schedule();
      return;
    }
    if (resp.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin(t ? 'The router refused that token. Paste another one.' : '');
      return; // polling resumes when a token is entered
    }
    if (!resp.ok) {
      let msg = resp.status + ' ' + resp.statusText;
      try { msg = (await resp.json()).error.message; } catch (_) { /* not the API's error form */ }
      banner('Status unavailable: ' + msg);
      schedule();
      return;
    }
    try {
      render(await resp.json());
    } catch (e) {
      banner('Could not show the status: ' + e.message);
    }
    schedule();
  }

  function schedule() {
    if (pollTimer == null) pollTimer = setTimeout(poll, POLL_MS);
  }

  function render(s) {
    $('login').hidden = true;
    $('main').hidden = false;
    $('forget').hidden = !token();
    const sources = {
      local: 'local: knactor up',
      autoscaler: 'Kubernetes: autoscaler view across routers',
      router: 'this router only',
    };
    $('source').textContent = sources[s.source] || s.source;
    banner(s.autoscaler_error ? 'Autoscaler view unavailable (' + s.autoscaler_error + '): showing this router\'s own statistics and pods.' : '');
    $('updated').textContent = 'updated ' + new Date(s.time).toLocaleTimeString();
    $('main').setAttribute('data-updated', s.time);
    $('window').textContent = '(last ' + s.window_seconds + ' s, one sample a second)';
    renderSummary(s);
    renderFunctions(s.functions);
    renderCharts(s.functions, s.window_seconds);
    renderHot(s.hot_actors);
    renderErrors(s.errors);
  }

  function renderSummary(s) {
    let pods = 0, rps = 0, inflight = 0, cold = 0;
    for (const f of s.functions) {
      pods += f.ready_pods; rps += f.requests_per_second; inflight += f.in_flight; cold += f.cold_starts.count;
    }
    $('sum-functions').textContent = s.functions.length;
    $('sum-pods').textContent = pods;
    $('sum-rps').textContent = fmt(rps, 1);
    $('sum-inflight').textContent = inflight;
    $('sum-cold').textContent = cold;
    $('sum-errors').textContent = s.errors.length;
  }

  function renderFunctions(fns) {
    const body = $('functions').tBodies[0];
    const rows = fns.map((f) => {
      const desired = f.desired_pods >= 0 ? f.desired_pods : null;
      let state = 'up';
      if (f.ready_pods === 0 && !f.starting_pods && !desired) state = 'zero';
      else if (desired != null && desired !== f.ready_pods) state = 'scaling';
      return el('tr', { 'data-function': keyOf(f), 'data-ready': f.ready_pods, 'data-desired': desired == null ? '' : desired },
        el('td', {}, el('span', { class: 'status ' + state, title: state }), el('strong', {}, nameOf(f))),
        el('td', { class: 'pods' }, f.ready_pods + ' / ' + (desired == null ? '–' : desired)),
        el('td', {}, f.starting_pods || 0),
        el('td', { class: f.panicking ? 'mode-panic' : '' }, desired == null ? '–' : f.panicking ? 'Panic' : 'Stable'),
        el('td', { class: 'num' }, fmt(f.requests_per_second, 1)),
        el('td', { class: 'num' }, fmt(f.concurrency, 2)),
        el('td', { class: 'num' }, f.in_flight),
        el('td', { class: 'num' }, desired == null ? '–' : f.active_actors),
        el('td', { class: 'num' }, f.cold_starts.count),
        el('td', { class: 'num' }, ms(f.cold_starts.p50_ms)),
        el('td', { class: 'num' }, ms(f.cold_starts.p99_ms)),
        el('td', { class: f.scale_error ? 'err wrap' : 'muted' }, f.scale_error || 'ok'));
    });
    body.replaceChildren(...rows);
    $('no-functions').hidden = fns.length > 0;
  }

  function chartOptions(width) {
    const stepped = uPlot.paths.stepped({ align: 1 });
    return {
      width: width,
      height: 200,
      cursor: { drag: { x: false, y: false } },
      scales: {
        x: { time: true },
        load: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] },
        pods: { range: (u, min, max) => [0, Math.max(2, Math.ceil(max * 1.1))] },
      },
      series: [
        {},
        { label: 'req/s', scale: 'load', stroke: '#0969da', fill: 'rgba(9,105,218,0.08)', width: 1.5, value: (u, v) => fmt(v, 1) },
        { label: 'concurrency', scale: 'pods', stroke: '#8250df', width: 1.5, value: (u, v) => fmt(v, 2) },
        { label: 'ready pods', scale: 'pods', stroke: '#1a7f37', width: 2.5, paths: stepped },
        { label: 'desired pods', scale: 'pods', stroke: '#bf8700', width: 1.5, dash: [6, 4], paths: stepped },
      ],
      axes: [
        {},
        { scale: 'load', label: 'req/s', size: 50 },
        { scale: 'pods', side: 1, label: 'pods · concurrency', grid: { show: false }, incrs: [1, 2, 5, 10, 20, 50, 100] },
      ],
    };
  }

  function renderCharts(fns, windowSeconds) {
    const box = $('charts');
    const keep = new Set();
    for (const f of fns) {
      const key = keyOf(f);
      keep.add(key);
      const tl = f.timeline;
      const xs = tl.map((p) => p.t / 1000);
      const data = [xs, tl.map((p) => p.rps), tl.map((p) => p.concurrency), tl.map((p) => p.ready),
        tl.map((p) => (p.desired >= 0 ? p.desired : null))];
      let c = charts.get(key);
      if (!c) {
        const target = el('div', {});
        const card = el('div', { class: 'chart', 'data-function': key }, el('h3', {}, nameOf(f)), target);
        box.append(card);
        c = { card, plot: new uPlot(chartOptions(Math.max(300, target.clientWidth || 460)), data, target), target };
        charts.set(key, c);
      } else {
        c.plot.setData(data);
      }
      if (xs.length > 0) {
        const end = xs[xs.length - 1];
        c.plot.setScale('x', { min: end - windowSeconds, max: end });
      }
    }
    for (const [key, c] of charts) {
      if (!keep.has(key)) {
        c.plot.destroy();
        c.card.remove();
        charts.delete(key);
      }
    }
  }

  function resizeCharts() {
    for (const c of charts.values()) c.plot.setSize({ width: Math.max(300, c.target.clientWidth), height: 200 });
  }

  function renderHot(hot) {
    const rows = hot.map((h) => el('tr', {},
      el('td', {}, h.function), el('td', { class: 'wrap' }, el('code', {}, h.actor)), el('td', { class: 'num' }, h.calls)));
    $('hot').tBodies[0].replaceChildren(...rows);
    $('no-hot').hidden = hot.length > 0;
  }

  function renderErrors(errs) {
    const rows = errs.map((e) => el('tr', { class: 'err-row' },
      el('td', { title: e.time }, new Date(e.time).toLocaleTimeString()),
      el('td', {}, e.function || '–'),
      el('td', { class: 'err' }, e.status),
      el('td', {}, e.code || '–'),
      el('td', {}, el('code', {}, e.request_id)),
      el('td', { class: 'wrap' }, el('code', {}, e.request), e.message ? el('div', { class: 'muted' }, e.message) : null)));
    $('errors').tBodies[0].replaceChildren(...rows);
    $('no-errors').hidden = errs.length > 0;
  }

  $('login').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = $('token').value.trim();
    if (!t) return;
    sessionStorage.setItem(TOKEN_KEY, t);
    $('token').value = '';
    $('login').hidden = true;
    poll();
  });
  $('forget').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    if (pollTimer != null) clearTimeout(pollTimer);
    pollTimer = null;
    showLogin('');
  });
  window.addEventListener('resize', resizeCharts);
  poll();
})();
