// The supervisor's wallboard: every seat and queue live (GET /api/v1/board, then the websocket's `board` frames),
// durations that tick in the browser from their `since`, service level and abandon rate coloured by thresholds,
// listen / whisper / barge per seat, and charts of today's call volume and workload.
import {
  api, byId, duration, fill, h, label, liveSocket, notify, pageOf, percent, reportError, serverNow, sinceMs,
  startPage, syncClock, ticker,
} from './common.js';
import {MISSING_NOTE, drawChart, loadChartLibrary} from './charts.js';

// Colour thresholds (a usual call-center target is 80% of calls answered within the service-level time and at
// most 5% abandoned): green at or beyond the target, amber within reach of it, red beyond.
export const THRESHOLDS = {
  serviceLevel: {good: 0.8, fair: 0.6},
  abandonRate: {good: 0.05, fair: 0.1},
};

const MODES = ['listen', 'whisper', 'barge'];
const STATS_REFRESH_MS = 60000;
const SPY_POLL_MS = 3000;

const state = {
  can: () => false, frames: 0, spy: [], spyTimer: null, volumeChart: null, workloadChart: null,
};

export function serviceLevelClass(ratio) {
  if (ratio === null || ratio === undefined) return '';
  if (ratio >= THRESHOLDS.serviceLevel.good) return 'ok';
  return ratio >= THRESHOLDS.serviceLevel.fair ? 'warn' : 'bad';
}

export function abandonClass(ratio) {
  if (ratio === null || ratio === undefined) return '';
  if (ratio <= THRESHOLDS.abandonRate.good) return 'ok';
  return ratio <= THRESHOLDS.abandonRate.fair ? 'warn' : 'bad';
}

function figure(value, text, kind = '', props = {}) {
  return h('div', {class: `figure ${kind}`, ...props},
    h('div', {class: 'value'}, value),
    h('div', {class: 'label'}, text));
}

// -- the board ----------------------------------------------------------------------------------------------------

function queueTile(queue, receivedAt, slSeconds) {
  const waitingSince = queue.waiting > 0 ? receivedAt - queue.longest_wait * 1000 : null;
  return h('section', {class: 'panel queue-tile', dataset: {queue: queue.queue}},
    h('h2', {}, queue.queue),
    h('div', {class: 'figures'},
      figure(String(queue.waiting), 'waiting', queue.waiting > 0 ? 'warn' : ''),
      figure(waitingSince === null ? '0:00' : ticker(waitingSince), 'longest wait', waitingSince !== null && queue.longest_wait > slSeconds ? 'bad' : ''),
      figure(percent(queue.service_level), `answered ≤ ${slSeconds}s`, serviceLevelClass(queue.service_level), {dataset: {figure: 'service-level'}}),
      figure(percent(queue.abandon_rate), 'abandoned', abandonClass(queue.abandon_rate), {dataset: {figure: 'abandon-rate'}})),
    h('div', {class: 'small muted'},
      `offered ${queue.offered} · answered ${queue.answered} · abandoned ${queue.abandoned}`,
      ` · agents ${queue.agents.available} free, ${queue.agents.busy} busy, ${queue.agents.paused} paused`,
      queue.avg_wait !== null ? ` · avg wait ${duration(queue.avg_wait)}` : '',
      queue.avg_talk !== null ? ` · avg talk ${duration(queue.avg_talk)}` : ''));
}

async function spy(seat, mode) {
  try {
    const session = await api('/api/v1/spy', {method: 'POST', body: {agent: seat.interface, mode}});
    notify(`Your phone rings: ${mode} on ${seat.display_name || seat.user || seat.interface}.`, 'ok');
    state.spy = [...state.spy.filter((item) => item.id !== session.id), session];
    showSpy();
    pollSpy();
  } catch (error) {
    reportError(error);
  }
}

function seatCard(seat) {
  const call = seat.call;
  const callSince = call ? sinceMs(call.answered_at || call.started_at) : null;
  const who = seat.display_name || seat.user || seat.interface;
  return h('article', {class: `panel seat-card state-${seat.state}`, dataset: {interface: seat.interface, state: seat.state}},
    h('div', {class: 'row'},
      h('span', {class: 'name grow'}, who),
      h('span', {class: `badge state-${seat.state}`}, label(seat.state))),
    h('div', {class: 'row'},
      seat.state === 'logged_out' ? h('span', {class: 'timer'}, '—') : ticker(sinceMs(seat.since), {class: 'timer', title: 'time in this state'}),
      seat.pause_reason ? h('span', {class: 'badge warn'}, label(seat.pause_reason)) : null),
    h('div', {class: 'small muted'}, seat.interface, seat.user && seat.display_name ? ` · ${seat.user}` : '',
      seat.queues.length ? ` · ${seat.queues.join(', ')}` : '', seat.teams.length ? ` · team ${seat.teams.join(', ')}` : ''),
    call ? h('div', {class: 'call'},
      h('strong', {class: 'caller'}, call.caller_name || call.caller_number || 'unknown caller'),
      call.caller_name && call.caller_number ? h('span', {class: 'mono'}, ` ${call.caller_number}`) : null,
      call.queue ? h('span', {class: 'small muted'}, ` · ${call.queue}`) : null,
      h('div', {}, 'call ', callSince === null ? '—' : ticker(callSince, {class: 'call-duration'}))) : null,
    h('div', {class: 'small'}, `calls this hour ${seat.handled_this_hour} · today ${seat.handled_today}`),
    state.can('spy') ? h('div', {class: 'spy'}, MODES.map((mode) => h('button', {
      type: 'button', class: mode === 'listen' ? '' : 'secondary', disabled: !call || seat.state !== 'on_call',
      dataset: {spy: mode}, title: `${mode} from your own phone`, onclick: () => spy(seat, mode),
    }, label(mode)))) : null);
}

function showBoard(board) {
  if (typeof board.at === 'string') syncClock(board.at);
  const receivedAt = serverNow();
  const sl = board.service_level_seconds;
  byId('board-day').textContent = board.day ? `${board.day} (${board.timezone})` : '';
  const totals = board.totals || {seats: {}};
  const seats = totals.seats || {};
  fill(byId('board-totals'),
    ['available', 'ringing', 'on_call', 'wrap_up', 'paused'].map((name) => h('span', {},
      h('span', {class: `badge state-${name}`}, label(name)), ` ${seats[name] ?? 0}`)),
    h('span', {}, `waiting ${totals.waiting ?? 0}`),
    h('span', {}, `handled today ${totals.handled_today ?? 0}`));
  const engine = board.engine || {};
  const engineNode = byId('engine-state');
  engineNode.className = `badge ${engine.ami_connected === false ? 'bad' : 'ok'}`;
  engineNode.textContent = engine.ami_connected === false ? 'Asterisk not connected' : 'Asterisk connected';
  fill(byId('board-queues'), (board.queues || []).map((queue) => queueTile(queue, receivedAt, sl)));
  const seatCards = (board.seats || []).filter((seat) => seat.state !== 'logged_out' || seat.user);
  fill(byId('board-seats'), seatCards.length ? seatCards.map(seatCard) : h('p', {class: 'empty'}, 'No seat is logged in.'));
}

async function loadBoard() {
  const framesBefore = state.frames;
  try {
    const board = await api('/api/v1/board');
    // A frame that came while the request was on its way is newer than this answer.
    if (state.frames === framesBefore) showBoard(board);
  } catch (error) {
    reportError(error);
  }
  document.body.dataset.board = 'loaded';
}

// -- listening ----------------------------------------------------------------------------------------------------

function showSpy() {
  const panel = byId('spy-panel');
  const live = state.spy.filter((item) => item.state !== 'ended');
  panel.classList.toggle('hidden', live.length === 0);
  fill(byId('spy-sessions'), live.map((session) => h('div', {class: 'row', dataset: {session: session.id}},
    h('span', {class: `badge ${session.state === 'active' ? 'info' : 'warn'}`}, session.state),
    h('span', {class: 'grow'}, `${label(session.mode)} on ${session.agent_user || session.agent}`),
    MODES.filter((mode) => mode !== session.mode).map((mode) => h('button', {
      type: 'button', class: 'secondary', disabled: session.state !== 'active',
      onclick: () => changeMode(session, mode),
    }, `Switch to ${mode}`)),
    h('button', {type: 'button', class: 'danger', onclick: () => stopSpy(session)}, 'Stop'))));
}

async function refreshSpy() {
  try {
    state.spy = (await api('/api/v1/spy')).items;
  } catch (error) {
    reportError(error);
  }
  showSpy();
  return state.spy.some((item) => item.state !== 'ended');
}

function pollSpy() {
  if (state.spyTimer) return;
  state.spyTimer = setInterval(async () => {
    if (!(await refreshSpy())) {
      clearInterval(state.spyTimer);
      state.spyTimer = null;
    }
  }, SPY_POLL_MS);
}

async function changeMode(session, mode) {
  try {
    await api(`/api/v1/spy/${encodeURIComponent(session.id)}`, {method: 'PATCH', body: {mode}});
    await refreshSpy();
  } catch (error) {
    reportError(error);
  }
}

async function stopSpy(session) {
  try {
    await api(`/api/v1/spy/${encodeURIComponent(session.id)}`, {method: 'DELETE'});
    await refreshSpy();
  } catch (error) {
    reportError(error);
  }
}

// -- statistics ---------------------------------------------------------------------------------------------------

function hourOf(period) {
  // The period is the center's local time with its offset: its clock time is what the center's day shows.
  const match = /T(\d\d:\d\d)/.exec(period || '');
  return match ? match[1] : String(period);
}

function table(headers, rows) {
  return h('table', {class: 'small'},
    h('thead', {}, h('tr', {}, headers.map((name) => h('th', {}, name)))),
    h('tbody', {}, rows.map((row) => h('tr', {}, row.map((cell) => h('td', {}, cell))))));
}

async function loadStats(Chart) {
  if (!state.can('stats.read')) {
    byId('charts').classList.add('hidden');
    return;
  }
  try {
    const [volume, workload] = await Promise.all([
      api('/api/v1/stats/calls', {query: {interval: 'hour'}}),
      api('/api/v1/stats/agents'),
    ]);
    const rows = volume.totals || [];
    const hours = rows.map((row) => hourOf(row.period));
    state.volumeChart = drawChart(Chart, byId('volume-chart'), state.volumeChart, {
      type: 'bar',
      data: {
        labels: hours,
        datasets: [
          {label: 'answered', data: rows.map((row) => row.answered), backgroundColor: '#15803d', stack: 'calls'},
          {label: 'abandoned', data: rows.map((row) => row.abandoned + row.abandoned_in_ivr), backgroundColor: '#b91c1c', stack: 'calls'},
          {label: 'voicemail / after hours', data: rows.map((row) => row.voicemail + row.after_hours), backgroundColor: '#a16207', stack: 'calls'},
        ],
      },
      options: {scales: {x: {stacked: true}, y: {stacked: true, beginAtZero: true, ticks: {precision: 0}}}},
    });
    const agents = workload.agents || [];
    state.workloadChart = drawChart(Chart, byId('workload-chart'), state.workloadChart, {
      type: 'bar',
      data: {
        labels: agents.map((agent) => agent.username || agent.interfaces.join(', ')),
        datasets: [
          {label: 'calls handled', data: agents.map((agent) => agent.handled), backgroundColor: '#1d4ed8', yAxisID: 'calls'},
          {label: 'talk minutes', data: agents.map((agent) => Math.round(agent.talk_seconds / 60)), backgroundColor: '#6d28d9', yAxisID: 'minutes'},
          {label: 'pause minutes', data: agents.map((agent) => Math.round(agent.pause_seconds / 60)), backgroundColor: '#a16207', yAxisID: 'minutes'},
        ],
      },
      options: {scales: {
        calls: {position: 'left', beginAtZero: true, ticks: {precision: 0}},
        minutes: {position: 'right', beginAtZero: true, grid: {drawOnChartArea: false}},
      }},
    });
    if (!Chart) {
      fill(byId('volume-table'), h('p', {class: 'note'}, MISSING_NOTE),
        table(['hour', 'offered', 'answered', 'abandoned', 'service level'],
          rows.map((row) => [hourOf(row.period), row.offered, row.answered, row.abandoned, percent(row.service_level)])));
      fill(byId('workload-table'), h('p', {class: 'note'}, MISSING_NOTE),
        table(['agent', 'handled', 'talk', 'pause', 'AHT', 'calls/hour'],
          agents.map((agent) => [agent.username || agent.interfaces.join(', '), agent.handled, duration(agent.talk_seconds),
            duration(agent.pause_seconds), duration(agent.aht_seconds), agent.calls_per_hour ?? '—'])));
    }
  } catch (error) {
    reportError(error);
  }
}

// -- start --------------------------------------------------------------------------------------------------------

async function start() {
  const page = await startPage(pageOf('/supervisor'));
  if (!page) return;
  state.can = page.can;
  byId('wall-toggle').addEventListener('click', () => document.body.classList.toggle('wall'));
  await loadBoard();
  liveSocket((frame) => {
    if (frame.type === 'board') {
      state.frames += 1;
      showBoard(frame);
    }
  }, {onOpen: loadBoard});
  if (state.can('spy')) refreshSpy().then((live) => live && pollSpy());
  const Chart = await loadChartLibrary();
  document.body.dataset.charts = Chart ? 'on' : 'off';
  await loadStats(Chart);
  setInterval(() => loadStats(Chart), STATS_REFRESH_MS);
}

start().catch(reportError);
