// memballoon dashboard: plain browser JavaScript, no build step.
// State arrives as full snapshots over server-sent events (read with fetch, so
// the request can carry an Authorization header); the first event of each
// connection is the host's history of the last 15 minutes, so the charts are
// drawn at once, and snapshots extend it. Host data reaches the DOM only
// through textContent.

(() => {
  const EVENTS_URL = '/api/v1/events';
  const HISTORY_S = 900;
  const CHART_HEIGHT_PX = 150;
  const MIN_WINDOW_S = 10;
  const RECONNECT_MS = 2000;
  /** No byte for this long (the host sends a keep-alive every 15 s): the stream is dead, reconnect. */
  const STALL_MS = 45000;
  const TOKEN_KEY = 'memballoon.token';
  const TARGET_COLOR = '#6b7280';
  const AVAILABLE_COLOR = '#10b981';
  const PALETTE = ['#2563eb', '#d97706', '#059669', '#7c3aed', '#db2777', '#0891b2', '#65a30d', '#dc2626'];

  const $ = (id) => document.getElementById(id);
  const cards = new Map(); // VM name -> card state
  let latest = null; // the newest snapshot event
  /** The host's history by VM name, from the `history` event: seeds each card's chart. */
  let seedHistory = {};
  /** Host clock minus this browser's (s): points carry the host's time, "now" must too. */
  let skewS = 0;
  /** The read-only token opens a view-only page: no balloon controls (the host would refuse them anyway). */
  let viewOnly = false;

  // ---------------------------------------------------------------- token

  /** The admin token: from `#token=…` (then kept in sessionStorage and dropped from the URL) or from sessionStorage. */
  function readToken() {
    const match = /(?:^|&)token=([^&]*)/.exec(location.hash.slice(1));
    try {
      if (match) {
        sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
        history.replaceState(null, '', location.pathname + location.search);
      }
      return sessionStorage.getItem(TOKEN_KEY);
    } catch {
      return match ? decodeURIComponent(match[1]) : null;
    }
  }
  let token = readToken();

  function headers(extra) {
    const h = Object.assign({}, extra);
    if (token) h.authorization = 'Bearer ' + token;
    return h;
  }

  // ---------------------------------------------------------------- formatting

  function mib(value) {
    if (value === undefined || value === null || !Number.isFinite(value)) return '–';
    const rounded = Math.abs(value) >= 100 || Number.isInteger(value) ? Math.round(value) : Math.round(value * 10) / 10;
    return rounded.toLocaleString('en-US') + ' MiB';
  }

  /** Every percentage on the page in one format: one decimal, a space, %. */
  function percent(value) {
    if (value === undefined || value === null || !Number.isFinite(value)) return '–';
    return value.toLocaleString('en-US', { minimumFractionDigits: 1, maximumFractionDigits: 1 }) + ' %';
  }

  function duration(ms) {
    const s = Math.floor(ms / 1000);
    if (s < 60) return s + ' s';
    const m = Math.floor(s / 60);
    if (m < 60) return m + ' min ' + (s % 60) + ' s';
    const h = Math.floor(m / 60);
    return h + ' h ' + (m % 60) + ' min';
  }

  function colorOf(name) {
    let hash = 0;
    for (const ch of name) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
    return PALETTE[hash % PALETTE.length];
  }

  /** Creates an element with a class and optional text. */
  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  // ---------------------------------------------------------------- pool

  function segment(className, widthPercent, title, color) {
    const seg = el('span', 'seg ' + className);
    seg.style.width = widthPercent + '%';
    if (color) seg.style.setProperty('--vm-color', color);
    seg.title = title;
    return seg;
  }

  function renderPool(host, vms) {
    const pool = host.pool;
    const running = vms.filter((vm) => vm.state === 'running').sort((a, b) => a.name.localeCompare(b.name));
    const guestsMib = running.reduce((sum, vm) => sum + vm.memoryMib, 0);
    const scale = Math.max(pool.sizeMib, guestsMib, 1);
    const pct = (value) => Math.max(0, (value / scale) * 100);

    const figures = $('pool-figures');
    figures.replaceChildren();
    const figure = (label, value, key, note) => {
      const box = el('div', 'figure');
      box.dataset.field = key;
      box.append(el('dt', '', label), el('dd', '', value));
      if (note) box.append(el('dd', 'muted small', note));
      figures.append(box);
    };
    figure('Pool', mib(pool.sizeMib), 'sizeMib');
    figure('Held', mib(pool.heldMib), 'heldMib');
    figure('Reclaimed', mib(pool.reclaimedMib), 'reclaimedMib', host.reclaim === 'physical' ? 'physical: handed off to cgroup limits' : 'by balloons (budget)');
    figure('Free', mib(pool.freeMib), 'freeMib');
    const overcommit = pool.sizeMib > 0 ? (guestsMib / pool.sizeMib) * 100 : 0;
    figure('Guests’ memory', mib(guestsMib), 'guestsMib', percent(overcommit) + ' of the pool');
    figure('Shared', mib(host.sharedMib), 'sharedMib', 'page fusion');

    // Pool row: what each VM holds, then what is free, out of the pool's size.
    const poolBar = $('pool-bar');
    const poolSegs = running.map((vm) => segment('held', pct(vm.heldMib || 0), vm.name + ' holds ' + mib(vm.heldMib), colorOf(vm.name)));
    poolSegs.push(segment('free', pct(Math.max(0, pool.freeMib)), 'free: ' + mib(pool.freeMib)));
    poolBar.replaceChildren(...poolSegs, marker(pct(pool.sizeMib)));
    poolBar.setAttribute('aria-label', `pool ${mib(pool.sizeMib)}: held ${mib(pool.heldMib)}, free ${mib(pool.freeMib)}`);

    // Guests row: each VM's memory, split into what it holds and what its balloon gave back.
    const guestBar = $('guest-bar');
    const guestSegs = [];
    for (const vm of running) {
      const color = colorOf(vm.name);
      const reclaimed = Math.max(0, vm.memoryMib - (vm.heldMib || 0));
      guestSegs.push(segment('held', pct(vm.heldMib || 0), vm.name + ' holds ' + mib(vm.heldMib), color));
      guestSegs.push(segment('reclaimed', pct(reclaimed), vm.name + ': balloon reclaimed ' + mib(reclaimed), color));
    }
    guestBar.replaceChildren(...guestSegs, marker(pct(pool.sizeMib)));
    guestBar.setAttribute('aria-label', `guests' memory ${mib(guestsMib)}, of which reclaimed ${mib(pool.reclaimedMib)}`);
    renderLegend(running);
  }

  /** The legend: one swatch per VM in the colour its bars have (solid: held; hatched: reclaimed), then free and the pool line. */
  function renderLegend(running) {
    const legend = $('legend');
    const items = [];
    for (const vm of running) {
      const item = el('span', 'legend-item');
      item.dataset.vm = vm.name;
      const held = el('span', 'swatch swatch-held');
      held.style.setProperty('--vm-color', colorOf(vm.name));
      const reclaimed = el('span', 'swatch swatch-reclaimed');
      reclaimed.style.setProperty('--vm-color', colorOf(vm.name));
      item.append(held, reclaimed, document.createTextNode(vm.name));
      items.push(item);
    }
    const key = (className, text) => {
      const item = el('span', 'legend-item');
      item.append(el('span', 'swatch ' + className), document.createTextNode(text));
      return item;
    };
    items.push(key('swatch-solid', 'held'), key('swatch-hatched', 'reclaimed by its balloon'), key('swatch-free', 'free'), key('swatch-line', 'pool size'));
    legend.replaceChildren(...items);
  }

  function marker(leftPercent) {
    const line = el('span', 'pool-line');
    line.style.left = 'calc(' + leftPercent + '% - 1px)';
    line.title = 'pool size';
    return line;
  }

  // ---------------------------------------------------------------- VM cards

  const FACTS = [
    ['memoryMib', 'Memory'],
    ['heldMib', 'Held of pool'],
    ['targetMib', 'Balloon target'],
    ['actualMib', 'Balloon actual'],
    ['lockedMib', 'Locked'],
    ['handedOffMib', 'Handed off'],
    ['availableMib', 'Available'],
    ['pressure', 'Pressure'],
    ['sharedMib', 'Shared'],
  ];

  function createCard(name) {
    const card = { name, history: [], chart: null };
    const root = el('article', 'card panel');
    root.dataset.vm = name;
    root.style.setProperty('--vm-color', colorOf(name));

    const head = el('header', 'card-head');
    card.title = el('h3', '', name);
    card.badge = el('span', 'badge');
    card.badge.dataset.field = 'state';
    card.pid = el('span', 'muted small');
    head.append(card.title, card.badge, card.pid);

    card.gauge = el('div', 'gauge');
    card.gaugeFill = el('span', 'gauge-fill');
    card.gaugeTarget = el('span', 'gauge-target');
    card.gauge.append(card.gaugeFill, card.gaugeTarget);

    const facts = el('dl', 'facts');
    card.facts = {};
    for (const [key, label] of FACTS) {
      const row = el('div', 'fact');
      const dd = el('dd', '', '–');
      dd.dataset.field = key;
      row.append(el('dt', '', label), dd);
      facts.append(row);
      card.facts[key] = dd;
    }
    card.status = el('p', 'balloon-status muted small');
    card.chartBox = el('div', 'chart');
    card.chartLegend = el('p', 'chart-legend muted small');
    for (const [label, className] of [
      ['target', 'key-target'],
      ['actual', 'key-actual'],
      ['available', 'key-available'],
    ]) {
      card.chartLegend.append(el('span', 'key ' + className), document.createTextNode(label + ' '));
    }
    card.chartLegend.append(document.createTextNode('· last ' + HISTORY_S / 60 + ' min'));
    card.reachableMib = null;

    const form = el('form', 'control');
    const label = el('label', '', 'Balloon ');
    card.input = el('input');
    card.input.type = 'number';
    card.input.min = '0';
    card.input.step = '1';
    card.input.required = true;
    card.input.name = 'targetMib';
    card.input.setAttribute('aria-label', 'balloon size for ' + name + ' in MiB');
    label.append(card.input, document.createTextNode(' MiB'));
    card.button = el('button', '', 'Set balloon');
    card.button.type = 'submit';
    card.hint = el('span', 'muted small');
    form.append(label, card.button, card.hint);
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      setBalloon(card, Number(card.input.value));
    });
    card.form = form;

    // Start a powered-off VM (balloonctl startvm NAME --type headless -- COMMAND): admin only, on hosts that start guests.
    const start = el('form', 'control start');
    const startLabel = el('label', '', 'Command ');
    card.command = el('input', 'command');
    card.command.type = 'text';
    card.command.name = 'command';
    card.command.placeholder = 'sleep 3600';
    card.command.autocomplete = 'off';
    card.command.setAttribute('aria-label', 'command to start ' + name + ' with (words separated by spaces, no shell)');
    startLabel.append(card.command);
    card.startButton = el('button', '', 'Start VM');
    card.startButton.type = 'submit';
    start.append(startLabel, card.startButton, el('span', 'muted small', 'words, no shell'));
    start.addEventListener('submit', (event) => {
      event.preventDefault();
      startVm(card, card.command.value);
    });
    card.startForm = start;
    card.message = el('p', 'message');
    card.message.setAttribute('role', 'status');
    card.message.setAttribute('aria-live', 'polite');
    card.message.hidden = true;

    // The start form joins the card only while it can be used (updateCard).
    root.append(head, card.gauge, facts, card.status, card.chartBox, card.chartLegend, form, card.message);
    card.root = root;
    return card;
  }

  function updateCard(card, vm, atMs) {
    const running = vm.state === 'running';
    const balloon = vm.balloon;
    const stats = vm.stats;
    card.root.dataset.state = vm.state;
    setText(card.badge, running ? 'running' : vm.starting ? 'starting' : 'powered off');
    card.badge.dataset.state = vm.state;
    setText(card.pid, running && vm.pid ? 'pid ' + vm.pid : '');

    const f = card.facts;
    setText(f.memoryMib, mib(vm.memoryMib));
    setText(f.heldMib, running ? mib(vm.heldMib) : '–');
    setText(f.targetMib, balloon ? mib(balloon.targetMib) : running ? '–' : mib(vm.defaultBalloonMib));
    setText(f.actualMib, balloon ? mib(balloon.actualMib) : '–');
    setText(
      f.lockedMib,
      balloon ? mib(balloon.lockedMib) + (balloon.lock && balloon.lock !== 'locked' ? ' (' + balloon.lock.replace('_', ' ') + ')' : '') : '–',
    );
    // Handed off: released by the guest and held by its cgroup limit (physically free on the host).
    setText(f.handedOffMib, balloon ? mib(balloon.handedOffMib || 0) : '–');
    setText(f.availableMib, stats ? mib(stats.availableMib) : '–');
    setText(f.pressure, stats ? percent(stats.psiSomeAvg10Percent) : '–');
    const shared = vm.sharedMib !== undefined ? vm.sharedMib : stats ? stats.sharedMib : undefined;
    const fusionOff = !vm.pageFusion && !(shared > 0);
    setText(f.sharedMib, fusionOff ? 'fusion off' : running ? mib(shared) : 'fusion on');

    // The balloon gauge: actual as a fill, target as a tick, out of the VM's memory.
    const memory = Math.max(vm.memoryMib, 1);
    card.gauge.hidden = !balloon;
    if (balloon) {
      card.gaugeFill.style.width = Math.min(100, (balloon.actualMib / memory) * 100) + '%';
      card.gaugeTarget.style.left = 'calc(' + Math.min(100, (balloon.targetMib / memory) * 100) + '% - 1px)';
    }
    setText(card.status, balloonStatus(vm));

    setText(card.hint, running ? balloonHint(card, vm) : 'set while running');
    card.input.disabled = !running;
    card.button.disabled = !running;
    card.form.hidden = viewOnly;
    // Only where it can work: an admin page, a host that starts guests, a VM that is powered off.
    const canStart = !viewOnly && vm.state === 'poweroff' && !vm.starting && Boolean(latest?.host.guests);
    if (canStart && !card.startForm.isConnected) card.form.after(card.startForm);
    else if (!canStart && card.startForm.isConnected) card.startForm.remove();
    if (running && card.input.value === '' && document.activeElement !== card.input && balloon) {
      card.input.placeholder = String(balloon.targetMib);
    }

    if (running && balloon) {
      if (card.history.length === 0 && seedHistory[vm.name]) card.history = seriesRows(seedHistory[vm.name]);
      delete seedHistory[vm.name];
      const point = [atMs / 1000, balloon.targetMib, balloon.actualMib, stats ? stats.availableMib : null];
      const last = card.history[card.history.length - 1];
      if (!last || last[0] < point[0]) card.history.push(point);
      const cutoff = atMs / 1000 - HISTORY_S;
      while (card.history.length > 0 && card.history[0][0] < cutoff) card.history.shift();
      ensureChart(card, vm.memoryMib);
    } else if (card.chart) {
      card.chart.destroy();
      card.chart = null;
      card.history = [];
    }
    // For tests and the curious: how many points the chart holds, and since when (host time, ms).
    card.chartBox.dataset.points = String(card.history.length);
    card.chartBox.dataset.sinceMs = card.history.length > 0 ? String(Math.round(card.history[0][0] * 1000)) : '';
    card.chartBox.hidden = !card.chart;
    card.chartLegend.hidden = !card.chart;
  }

  // Guest reasons that mean "this balloon cannot grow further now", not "try again".
  const CEILING_REASONS = ['guest_floor', 'out_of_memory', 'guest_pressure'];

  /**
   * The hint beside the balloon control: the largest balloon the host allows
   * (below 90 % of the VM's memory, or the VM's balloonMaxMib), and, once the
   * guest has stopped a balloon short for its own reasons (its floor, no
   * memory), the size it reached: what is reachable now.
   */
  function balloonHint(card, vm) {
    const b = vm.balloon;
    const ruleMib = Math.ceil(vm.memoryMib * 0.9) - 1;
    if (b && b.state === 'short' && CEILING_REASONS.includes(b.reason)) card.reachableMib = b.actualMib;
    else if (b && card.reachableMib !== null && b.actualMib > card.reachableMib) card.reachableMib = null;
    if (card.reachableMib !== null && card.reachableMib < ruleMib) {
      return (
        'up to about ' +
        mib(card.reachableMib) +
        ' (the guest stopped there: ' +
        String(b && b.reason !== 'none' ? b.reason : 'guest_floor').replace(/_/g, ' ') +
        '; the 90 % rule allows ' +
        mib(ruleMib) +
        ')'
      );
    }
    return 'up to ' + mib(ruleMib) + ' (the 90 % rule)';
  }

  function balloonStatus(vm) {
    const b = vm.balloon;
    if (vm.state !== 'running') {
      return vm.defaultBalloonMib > 0 ? 'Powered off. Its default balloon of ' + mib(vm.defaultBalloonMib) + ' is requested at every start.' : 'Powered off.';
    }
    if (!b) return 'Waiting for the guest’s first report…';
    switch (b.state) {
      case 'inflating':
        return 'Inflating towards ' + mib(b.targetMib) + '…';
      case 'deflating':
        return 'Deflating towards ' + mib(b.targetMib) + '…';
      case 'short':
        return 'Stopped short of ' + mib(b.targetMib) + ': ' + String(b.reason).replace(/_/g, ' ') + '.';
      default:
        return b.targetMib === 0 && b.actualMib === 0 ? 'No balloon.' : 'Steady.';
    }
  }

  // ---------------------------------------------------------------- charts

  function ensureChart(card, memoryMib) {
    if (card.chart) {
      if (card.chartMemoryMib !== memoryMib) {
        card.chart.destroy();
        card.chart = null;
      } else {
        return;
      }
    }
    if (typeof uPlot !== 'function') return; // uPlot failed to load: figures still work
    card.chartMemoryMib = memoryMib;
    const color = colorOf(card.name);
    const opts = {
      width: chartWidth(card),
      height: CHART_HEIGHT_PX,
      cursor: { drag: { x: false, y: false } },
      legend: { show: false },
      scales: {
        x: { time: true, range: () => chartWindow(card) },
        y: { range: () => [0, memoryMib] },
      },
      axes: [
        {
          stroke: '#6b7280',
          grid: { stroke: '#eef0f3' },
          ticks: { stroke: '#e5e7eb' },
          // Seconds only where ticks are closer than a minute.
          values: (u, vals, axisIdx, space, incr) =>
            vals.map((v) =>
              new Date(v * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: incr < 60 ? '2-digit' : undefined, hour12: false }),
            ),
        },
        {
          stroke: '#6b7280',
          grid: { stroke: '#eef0f3' },
          ticks: { stroke: '#e5e7eb' },
          size: 48,
          label: 'MiB',
          labelSize: 16,
          labelFont: '11px system-ui, sans-serif',
        },
      ],
      series: [
        {},
        { label: 'target', stroke: TARGET_COLOR, width: 2, dash: [6, 4], paths: uPlot.paths.stepped({ align: 1 }) },
        { label: 'actual', stroke: color, width: 2, fill: color + '22', paths: uPlot.paths.stepped({ align: 1 }) },
        { label: 'available', stroke: AVAILABLE_COLOR, width: 1.5 },
      ],
    };
    card.chart = new uPlot(opts, chartData(card), card.chartBox);
  }

  function nowS() {
    return Date.now() / 1000 + skewS;
  }

  /** A `history` series (columns, ms) as chart rows [s, target, actual, available]. */
  function seriesRows(series) {
    return series.atMs.map((at, i) => [at / 1000, series.targetMib[i], series.actualMib[i], series.availableMib[i]]);
  }

  /** The `history` event: replaces every card's history (the host's is complete; ours may have a gap). */
  function applyHistory(event) {
    seedHistory = event.vms || {};
    for (const card of cards.values()) {
      card.history = [];
      if (card.chart) card.chart.setData(chartData(card));
    }
  }

  /** The chart's time range: the history so far (at least MIN_WINDOW_S), growing to HISTORY_S, then scrolling. */
  function chartWindow(card) {
    const now = nowS();
    const first = card.history.length > 0 ? card.history[0][0] : now;
    return [Math.max(now - HISTORY_S, Math.min(first, now - MIN_WINDOW_S)), now];
  }

  /** The history as uPlot columns, extended to now so a quiet VM's lines reach the right edge. */
  function chartData(card) {
    const rows = card.history.slice();
    const last = rows[rows.length - 1];
    if (last) rows.push([nowS(), last[1], last[2], last[3]]);
    return [rows.map((r) => r[0]), rows.map((r) => r[1]), rows.map((r) => r[2]), rows.map((r) => r[3])];
  }

  function chartWidth(card) {
    return Math.max(200, Math.floor(card.chartBox.clientWidth || card.root.clientWidth - 32));
  }

  function redrawCharts() {
    for (const card of cards.values()) if (card.chart) card.chart.setData(chartData(card));
  }

  const resizer = new ResizeObserver((entries) => {
    for (const entry of entries) {
      const card = cards.get(entry.target.closest('.card').dataset.vm);
      if (card?.chart) card.chart.setSize({ width: chartWidth(card), height: CHART_HEIGHT_PX });
    }
  });

  // ---------------------------------------------------------------- balloon control

  async function setBalloon(card, targetMib) {
    if (!Number.isInteger(targetMib) || targetMib < 0) {
      showMessage(card, 'error', 'Enter a whole number of MiB, 0 or more.');
      return;
    }
    card.button.disabled = true;
    showMessage(card, 'pending', 'Asking the host for a ' + mib(targetMib) + ' balloon…');
    try {
      const res = await fetch('/api/v1/vms/' + encodeURIComponent(card.name) + '/balloon', {
        method: 'PUT',
        headers: headers({ 'content-type': 'application/json', accept: 'application/json' }),
        body: JSON.stringify({ targetMib }),
      });
      let body = null;
      try {
        body = await res.json();
      } catch {
        body = null;
      }
      if (res.ok) {
        showMessage(card, 'ok', 'Target set to ' + mib(targetMib) + '. The chart follows the guest.');
        card.input.value = '';
      } else {
        const error = body?.error ? body.error : null;
        let text = error?.message ? error.message : 'HTTP ' + res.status + ' ' + res.statusText;
        if (res.status === 401 || res.status === 403) text += ' — open the dashboard as …/#token=YOUR_TOKEN';
        showMessage(card, 'error', 'Refused: ' + text, error?.code);
      }
    } catch (err) {
      showMessage(card, 'error', 'Could not reach the host: ' + (err?.message ? err.message : String(err)));
    } finally {
      card.button.disabled = card.root.dataset.state !== 'running';
    }
  }

  /** POST …/startvm with the command's words (split on spaces: the host runs it without a shell, as balloonctl does). */
  async function startVm(card, text) {
    const command = text.trim().split(/\s+/).filter(Boolean);
    if (command.length === 0) {
      showMessage(card, 'error', 'Enter the command the VM runs, e.g. sleep 3600.');
      return;
    }
    card.startButton.disabled = true;
    showMessage(card, 'pending', 'Starting ' + card.name + '…');
    try {
      const res = await fetch('/api/v1/vms/' + encodeURIComponent(card.name) + '/startvm', {
        method: 'POST',
        headers: headers({ 'content-type': 'application/json', accept: 'application/json' }),
        body: JSON.stringify({ command, type: 'headless' }),
      });
      let body = null;
      try {
        body = await res.json();
      } catch {
        body = null;
      }
      if (res.ok) {
        showMessage(card, 'ok', 'Started' + (body?.pid ? ' (pid ' + body.pid + ')' : '') + '.');
        card.command.value = '';
      } else {
        const error = body?.error ? body.error : null;
        let text = error?.message ? error.message : 'HTTP ' + res.status + ' ' + res.statusText;
        if (res.status === 401 || res.status === 403) text += ' — open the dashboard as …/#token=YOUR_ADMIN_TOKEN';
        showMessage(card, 'error', 'Refused: ' + text, error?.code);
      }
    } catch (err) {
      showMessage(card, 'error', 'Could not reach the host: ' + (err?.message ? err.message : String(err)));
    } finally {
      card.startButton.disabled = false;
    }
  }

  function showMessage(card, kind, text, code) {
    card.message.hidden = false;
    card.message.dataset.kind = kind;
    card.message.replaceChildren(document.createTextNode(text));
    if (code) card.message.append(' ', el('code', 'muted small', code));
  }

  // ---------------------------------------------------------------- snapshots

  /** What KSM does, and why when memballoon is not the reason (no page-fusion VM runs). */
  function ksmText(host, vms) {
    const fusionVms = vms.filter((vm) => vm.state === 'running' && vm.pageFusion).length;
    if (!host.ksm.available) return host.ksm.running ? 'KSM on (not driven by this host)' : 'KSM unavailable';
    if (!host.ksm.running) return 'KSM idle';
    if (fusionVms === 0) return 'KSM on for another reason (no page-fusion VM runs)';
    return 'KSM merging for ' + fusionVms + (fusionVms === 1 ? ' page-fusion VM' : ' page-fusion VMs');
  }

  function render(event) {
    latest = event;
    skewS = event.atMs / 1000 - Date.now() / 1000;
    const { host, vms } = event;
    const meta = $('host-meta');
    setText(meta, 'v' + host.version + ' · ' + host.listen + ' · up ' + duration(host.uptimeMs) + ' · ' + ksmText(host, vms));
    meta.title = host.ksm.detail;
    renderPool(host, vms);

    const sorted = vms.slice().sort((a, b) => (a.state === b.state ? a.name.localeCompare(b.name) : a.state === 'running' ? -1 : 1));
    const container = $('vms');
    const seen = new Set();
    sorted.forEach((vm, index) => {
      seen.add(vm.name);
      let card = cards.get(vm.name);
      if (!card) {
        card = createCard(vm.name);
        cards.set(vm.name, card);
      }
      if (container.children[index] !== card.root) container.insertBefore(card.root, container.children[index] || null);
      if (!card.observed) {
        resizer.observe(card.chartBox);
        card.observed = true;
      }
      // Points carry the host's time, as the history does; nowS() follows it.
      updateCard(card, vm, event.atMs);
    });
    for (const [name, card] of cards) {
      if (seen.has(name)) continue;
      if (card.chart) card.chart.destroy();
      resizer.unobserve(card.chartBox);
      card.root.remove();
      cards.delete(name);
    }
    const running = vms.filter((vm) => vm.state === 'running').length;
    setText($('vm-count'), running + ' running of ' + vms.length);
    $('no-vms').hidden = vms.length > 0;
  }

  // ---------------------------------------------------------------- event stream

  function setConnection(state, text) {
    const node = $('conn');
    node.dataset.state = state;
    setText(node, text);
  }

  function handleEvent(block) {
    let type = 'message';
    const data = [];
    for (const line of block.split('\n')) {
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon === -1 ? line : line.slice(0, colon);
      const value = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'event') type = value;
      else if (field === 'data') data.push(value);
    }
    if (data.length === 0) return;
    if (type === 'history') applyHistory(JSON.parse(data.join('\n')));
    else if (type === 'snapshot') render(JSON.parse(data.join('\n')));
  }

  /** The live connection: aborting it makes connect() start over at once (a new token). */
  let connection = null;
  let retryTimer = null;
  const TOKEN_HINT = 'the host needs its admin token: open this page as …/#token=TOKEN (the token is in the host’s data directory, admin.token)';

  async function connect() {
    clearTimeout(retryTimer);
    const abort = new AbortController();
    connection = abort;
    let stall = setTimeout(() => abort.abort(), STALL_MS);
    let retry = true;
    try {
      const res = await fetch(EVENTS_URL, { headers: headers({ accept: 'text/event-stream' }), cache: 'no-store', signal: abort.signal });
      if (res.status === 401 || res.status === 403) {
        // Retrying cannot help: wait for a token in the address bar (hashchange).
        retry = false;
        setConnection('auth', token ? 'the admin token was refused; ' + TOKEN_HINT : TOKEN_HINT);
        return;
      }
      if (!res.ok || !res.body) {
        let detail = 'HTTP ' + res.status;
        try {
          const body = await res.json();
          if (body?.error) detail = body.error.message;
        } catch {}
        throw new Error(detail);
      }
      viewOnly = res.headers.get('x-memballoon-access') === 'read-only';
      document.body.dataset.access = viewOnly ? 'read-only' : 'admin';
      setConnection('live', viewOnly ? 'live · view only' : 'live');
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        clearTimeout(stall);
        stall = setTimeout(() => abort.abort(), STALL_MS);
        buffer += value.replace(/\r\n?/g, '\n');
        let end;
        while ((end = buffer.indexOf('\n\n')) !== -1) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          handleEvent(block);
        }
      }
      setConnection('down', 'disconnected; reconnecting…');
    } catch (err) {
      if (connection !== abort) return; // replaced by a newer connection
      setConnection('down', 'host unreachable (' + (err?.message ? err.message : 'error') + '); retrying…');
    } finally {
      clearTimeout(stall);
      abort.abort();
    }
    if (retry && connection === abort) retryTimer = setTimeout(connect, RECONNECT_MS);
  }

  // A token typed or pasted into the address bar (#token=…) takes effect at once.
  window.addEventListener('hashchange', () => {
    const next = readToken();
    if (next === token) return;
    token = next;
    if (connection) connection.abort();
    connect();
  });

  setInterval(() => {
    if (latest) redrawCharts();
  }, 1000);
  connect();
})();
