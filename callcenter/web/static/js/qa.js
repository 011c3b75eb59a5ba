// QA: search the recordings index with every criterion of GET /api/v1/recordings, page through the results, play
// one (every playback is audited by the server) with its waveform, edit its description and tags, and see the
// integrity state of each file. Evaluate the call of the recording played on the call evaluation items (1-5 each,
// a comment; saving again replaces one's own evaluation), and see the quality summary per agent.
import {
  api, apiDocument, byId, duration, fill, h, label, localToIso, notify, option, pageOf, reportError, schemaEnum,
  startPage, when,
} from './common.js';

const STATUS_CLASS = {complete: 'ok', recording: 'info', missing: 'bad', tampered: 'bad', erased: ''};
const STATUS_TEXT = {
  complete: 'complete: the file is there with its checksum',
  recording: 'still being recorded',
  missing: 'missing: the file is gone',
  tampered: 'tampered: the file no longer matches its checksum',
  erased: 'erased on request or by retention',
};

const state = {
  query: {}, offset: 0, page: null, selected: null, users: new Map(), peaks: null,
  canEvaluate: false, canReadQuality: false, evaluation: null,
};
const SCORES = [1, 2, 3, 4, 5];

function enumOf(documentation, schema, property) {
  const found = documentation?.components?.schemas?.[schema]?.properties?.[property]?.enum;
  return Array.isArray(found) ? found : [];
}

function fillSelect(select, values) {
  for (const value of values) select.append(option(value, label(value)));
}

// -- search -------------------------------------------------------------------------------------------------------

function readQuery(form) {
  const data = new FormData(form);
  const query = {};
  for (const [key, raw] of data.entries()) {
    const value = String(raw).trim();
    if (!value) continue;
    query[key] = key === 'since' || key === 'until' ? localToIso(value) : value;
  }
  return query;
}

function integrityBadge(item) {
  return h('span', {
    class: `badge ${STATUS_CLASS[item.status] ?? ''}`,
    title: (STATUS_TEXT[item.status] || item.status) + (item.sha256 ? ` · sha256 ${item.sha256}` : ''),
  }, item.status);
}

function agentName(agent) {
  if (!agent) return '';
  const user = agent.user_id ? state.users.get(agent.user_id) : null;
  return user ? `${user.display_name || user.username} (${agent.interface || ''})` : agent.interface || '';
}

function showResults(page) {
  state.page = page;
  const items = page.items || [];
  const first = items.length ? page.offset + 1 : 0;
  const last = page.offset + items.length;
  byId('results-count').textContent = `${page.total_exact ? '' : 'at least '}${page.total} found`;
  byId('page-info').textContent = items.length ? `${first}–${last}` : '';
  byId('prev-page').disabled = page.offset === 0;
  byId('next-page').disabled = last >= page.total && page.total_exact;
  fill(byId('results'), items.length ? h('table', {id: 'results-table'},
    h('thead', {}, h('tr', {}, ['Started', 'Type', 'Dir', 'Caller', 'Called', 'Agent', 'Queue', 'Length', 'Service record', 'Description', 'Integrity']
      .map((name) => h('th', {}, name)))),
    h('tbody', {}, items.map((item) => {
      const row = h('tr', {class: 'selectable', tabindex: 0, dataset: {recording: item.id}},
        h('td', {class: 'small'}, when(item.started_at)),
        h('td', {}, label(item.kind)),
        h('td', {}, item.direction === 'outbound' ? 'out' : 'in'),
        h('td', {class: 'mono'}, item.caller_number || ''),
        h('td', {class: 'mono'}, item.called_number || item.did || ''),
        h('td', {class: 'small'}, agentName(item.agent)),
        h('td', {}, item.queue || ''),
        h('td', {}, duration(item.duration)),
        h('td', {class: 'small'}, item.service_record?.type ? label(item.service_record.type) : ''),
        h('td', {class: 'small pre'}, item.description || ''),
        h('td', {}, integrityBadge(item)));
      row.addEventListener('click', () => select(item));
      row.addEventListener('keydown', (event) => {
        if (event.key === 'Enter') select(item);
      });
      return row;
    }))) : h('p', {class: 'empty'}, 'No recording matches.'));
  markSelected();
}

async function search(offset = 0) {
  state.offset = offset;
  byId('search-button').disabled = true;
  try {
    showResults(await api('/api/v1/recordings', {query: {...state.query, offset}}));
  } catch (error) {
    reportError(error);
  } finally {
    byId('search-button').disabled = false;
  }
}

// -- player -------------------------------------------------------------------------------------------------------

function markSelected() {
  for (const row of document.querySelectorAll('#results tbody tr')) {
    row.classList.toggle('selected', Boolean(state.selected) && row.dataset.recording === state.selected.id);
  }
}

function drawWaveform() {
  const canvas = byId('waveform');
  const width = canvas.clientWidth || canvas.width;
  canvas.width = width;
  const context = canvas.getContext('2d');
  const height = canvas.height;
  context.fillStyle = '#0f172a';
  context.fillRect(0, 0, width, height);
  const peaks = state.peaks?.peaks || [];
  const total = state.peaks?.duration || state.selected?.duration || 0;
  // Paused stretches (PCI pause) are silent on purpose: shaded so that QA does not take them for a fault.
  if (total > 0) {
    context.fillStyle = 'rgba(161, 98, 7, 0.45)';
    for (const [from, to] of state.selected?.paused_intervals || []) {
      const start = (Math.max(0, from) / total) * width;
      const end = ((to ?? total) / total) * width;
      context.fillRect(start, 0, Math.max(1, end - start), height);
    }
  }
  const middle = height / 2;
  const step = peaks.length ? width / peaks.length : 0;
  const audio = byId('player');
  const playedUntil = audio.duration ? (audio.currentTime / audio.duration) * width : 0;
  for (let index = 0; index < peaks.length; index += 1) {
    const x = index * step;
    const amplitude = Math.max(1, peaks[index] * (middle - 4));
    context.fillStyle = x <= playedUntil ? '#60a5fa' : '#94a3b8';
    context.fillRect(x, middle - amplitude, Math.max(1, step - 1), amplitude * 2);
  }
  if (playedUntil > 0) {
    context.fillStyle = '#f8fafc';
    context.fillRect(playedUntil, 0, 2, height);
  }
}

async function loadWaveform(item) {
  state.peaks = null;
  const canvas = byId('waveform');
  delete canvas.dataset.points;
  drawWaveform();
  if (item.status === 'erased' || item.status === 'missing') return;
  const points = Math.min(2000, Math.max(50, Math.floor(canvas.clientWidth || 600)));
  try {
    state.peaks = await api(`/api/v1/recordings/${encodeURIComponent(item.id)}/waveform`, {query: {points}});
    if (state.selected?.id !== item.id) return;
    canvas.dataset.points = String(state.peaks.peaks.length);
    drawWaveform();
  } catch (error) {
    reportError(error);
  }
}

function select(item) {
  state.selected = item;
  markSelected();
  fill(byId('player-info'),
    h('div', {class: 'row'}, h('strong', {class: 'mono'}, item.id), integrityBadge(item), h('span', {class: 'badge'}, label(item.kind))),
    h('div', {class: 'small'}, when(item.started_at), ' · ', duration(item.duration), ' · ', item.direction,
      item.caller_number ? ` · from ${item.caller_number}` : '', item.called_number ? ` · to ${item.called_number}` : ''),
    h('div', {class: 'small muted'}, `call ${item.linkedid || '—'}`, item.size ? ` · ${Math.round(item.size / 1024)} KiB` : '',
      item.sha256 ? ` · sha256 ${item.sha256.slice(0, 16)}…` : ''),
    (item.paused_intervals || []).length ? h('div', {class: 'small'}, 'Paused (PCI): ',
      item.paused_intervals.map(([from, to]) => `${duration(from)}–${to === null ? 'end' : duration(to)}`).join(', ')) : null,
    STATUS_CLASS[item.status] === 'bad' ? h('p', {class: 'note'}, STATUS_TEXT[item.status]) : null);
  const audio = byId('player');
  if (item.status === 'erased' || item.status === 'missing') {
    audio.removeAttribute('src');
    audio.load();
  } else {
    audio.src = `/api/v1/recordings/${encodeURIComponent(item.id)}/audio`;
  }
  byId('edit-form').classList.remove('hidden');
  byId('edit-description').value = item.description || '';
  byId('edit-tags').value = (item.tags || []).join(', ');
  loadWaveform(item);
  loadEvaluation(item);
}

function wirePlayer() {
  const audio = byId('player');
  const canvas = byId('waveform');
  let frame = null;
  const animate = () => {
    drawWaveform();
    frame = audio.paused ? null : requestAnimationFrame(animate);
  };
  audio.addEventListener('play', () => {
    if (!frame) frame = requestAnimationFrame(animate);
  });
  audio.addEventListener('seeked', drawWaveform);
  audio.addEventListener('error', () => {
    if (state.selected && audio.getAttribute('src')) notify('The audio could not be loaded; see its integrity state.', 'error');
  });
  canvas.addEventListener('click', (event) => {
    if (!audio.duration) return;
    const box = canvas.getBoundingClientRect();
    audio.currentTime = ((event.clientX - box.left) / box.width) * audio.duration;
    drawWaveform();
  });
  window.addEventListener('resize', drawWaveform);

  byId('edit-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!state.selected) return;
    const tags = byId('edit-tags').value.split(',').map((tag) => tag.trim()).filter(Boolean);
    try {
      const updated = await api(`/api/v1/recordings/${encodeURIComponent(state.selected.id)}`, {
        method: 'PATCH', body: {description: byId('edit-description').value, tags},
      });
      notify('Description saved.', 'ok');
      state.selected = {...state.selected, ...updated};
      if (state.page) {
        showResults({...state.page, items: state.page.items.map((item) => (item.id === updated.id ? updated : item))});
      }
    } catch (error) {
      reportError(error);
    }
  });
}

// -- evaluation ---------------------------------------------------------------------------------------------------

function userName(userId) {
  const user = userId ? state.users.get(userId) : null;
  return user ? user.display_name || user.username : userId ? `user ${userId}` : '—';
}

function overallText(evaluation) {
  return evaluation.overall === null ? 'no items scored' : `overall ${evaluation.overall}`;
}

async function loadEvaluation(item) {
  if (!state.canReadQuality) return;
  state.evaluation = null;
  byId('evaluate-panel').classList.remove('hidden');
  byId('evaluate-form').classList.add('hidden');
  fill(byId('evaluate-others'));
  fill(byId('evaluate-info'), h('p', {class: 'small muted'}, 'Loading the evaluations…'));
  try {
    const found = await api(`/api/v1/recordings/${encodeURIComponent(item.id)}/evaluation`);
    if (state.selected?.id === item.id) showEvaluation(found);
  } catch (error) {
    if (state.selected?.id === item.id) fill(byId('evaluate-info'), h('p', {class: 'empty'}, error.message));
  }
}

function scoreSelect(item, chosen) {
  const select = h('select', {name: `score-${item.id}`, dataset: {item: String(item.id)}, 'aria-label': `${item.name} score`},
    option('', 'score…'), SCORES.map((score) => option(String(score), String(score), score === chosen)));
  return h('label', {class: 'score-item'}, h('span', {}, item.name), select);
}

function showEvaluation(found) {
  state.evaluation = found;
  const mine = found.mine;
  fill(byId('evaluate-info'),
    h('div', {class: 'small'}, `call ${found.call_id} · agent ${userName(found.agent_user_id)}`),
    mine
      ? h('p', {class: 'small', id: 'evaluate-mine'}, `Your evaluation of ${when(mine.evaluated_at)}, ${overallText(mine)}. Saving again replaces it (the old one is kept).`)
      : h('p', {class: 'small muted', id: 'evaluate-mine'}, state.canEvaluate ? 'You have not evaluated this call yet.' : 'Evaluations of this call:'));
  if (state.canEvaluate) {
    const given = new Map((mine?.scores || []).map((score) => [score.item_id, score.score]));
    fill(byId('evaluate-items'), found.items.length
      ? found.items.map((item) => scoreSelect(item, given.get(item.id)))
      : h('p', {class: 'note'}, 'No call evaluation item is active: an administrator adds them (evaluation items).'));
    byId('evaluate-comment').value = mine?.comment || '';
    byId('evaluate-form').classList.remove('hidden');
  }
  const others = found.evaluations.filter((evaluation) => evaluation.id !== mine?.id);
  fill(byId('evaluate-others'), others.length ? h('div', {},
    h('h3', {}, 'Other evaluators'),
    h('ul', {class: 'small'}, others.map((evaluation) => h('li', {},
      `${evaluation.evaluator} · ${when(evaluation.evaluated_at)} · ${overallText(evaluation)}`,
      evaluation.comment ? h('div', {class: 'pre muted'}, evaluation.comment) : null)))) : null);
}

function wireEvaluation() {
  byId('evaluate-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const item = state.selected;
    if (!item || !state.evaluation) return;
    const selects = [...byId('evaluate-items').querySelectorAll('select')];
    const missing = selects.filter((select) => !select.value);
    if (missing.length) {
      notify('Score every item from 1 to 5 before saving.', 'error');
      missing[0].focus();
      return;
    }
    const scores = selects.map((select) => ({item_id: Number(select.dataset.item), score: Number(select.value)}));
    byId('evaluate-save').disabled = true;
    try {
      await api(`/api/v1/recordings/${encodeURIComponent(item.id)}/evaluation`, {
        method: 'POST', body: {scores, comment: byId('evaluate-comment').value},
      });
      notify('Evaluation saved.', 'ok');
      if (state.selected?.id === item.id) await loadEvaluation(item);
    } catch (error) {
      reportError(error);
    } finally {
      byId('evaluate-save').disabled = false;
    }
  });
}

// -- quality per agent --------------------------------------------------------------------------------------------

function localInput(date) {
  const pad = (value) => String(value).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

function qualityPeriod() {
  const form = byId('quality-form');
  return {start: localToIso(form.elements.start.value), end: localToIso(form.elements.end.value)};
}

function average(value) {
  return value === null || value === undefined ? '—' : Number(value).toFixed(2);
}

function showQuality(summary) {
  const items = summary.items || [];
  fill(byId('quality-results'), summary.agents.length ? h('table', {id: 'quality-table'},
    h('thead', {}, h('tr', {}, ['Agent', 'Evaluations', 'Overall', ...items.map((item) => item.active ? item.name : `${item.name} (retired)`)]
      .map((name) => h('th', {}, name)))),
    h('tbody', {}, summary.agents.map((agent) => {
      const averages = new Map(agent.items.map((one) => [one.item_id, one.average]));
      return h('tr', {},
        h('td', {}, agent.agent_user_id === null ? 'no known agent' : agent.display_name || agent.username || `user ${agent.agent_user_id}`),
        h('td', {}, String(agent.evaluations)),
        h('td', {}, average(agent.overall)),
        items.map((item) => h('td', {}, average(averages.get(item.id)))));
    }))) : h('p', {class: 'empty'}, 'No call was evaluated in this period.'));
}

async function loadQuality() {
  const period = qualityPeriod();
  if (!period.start || !period.end) return;
  const csv = new URLSearchParams({...period, format: 'csv'});
  byId('quality-csv').setAttribute('href', `/api/v1/quality/agents?${csv}`);
  byId('quality-button').disabled = true;
  try {
    showQuality(await api('/api/v1/quality/agents', {query: period}));
  } catch (error) {
    reportError(error);
  } finally {
    byId('quality-button').disabled = false;
  }
}

function wireQuality() {
  const form = byId('quality-form');
  const now = new Date();
  const end = new Date(now.getTime() + 60 * 60 * 1000);
  form.elements.start.value = localInput(new Date(now.getTime() - 30 * 24 * 60 * 60 * 1000));
  form.elements.end.value = localInput(end);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    loadQuality();
  });
  byId('quality-panel').classList.remove('hidden');
}

// -- start --------------------------------------------------------------------------------------------------------

async function start() {
  const page = await startPage(pageOf('/qa'));
  if (!page) return;
  const form = byId('search-form');
  const [documentation, users] = await Promise.all([
    apiDocument(),
    page.can('users.read') ? api('/api/v1/users').catch(() => ({items: []})) : {items: []},
  ]);
  fillSelect(form.elements.kind, enumOf(documentation, 'Recording', 'kind'));
  fillSelect(form.elements.status, enumOf(documentation, 'Recording', 'status'));
  fillSelect(form.elements.service_record_type, schemaEnum(documentation, 'CrmRecordType'));
  for (const user of users.items) {
    state.users.set(user.id, user);
    form.elements.agent_user_id.append(option(String(user.id), `${user.display_name || user.username} (${user.username})`));
  }
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    state.query = readQuery(form);
    search(0);
  });
  form.addEventListener('reset', () => setTimeout(() => {
    state.query = readQuery(form);
    search(0);
  }));
  byId('prev-page').addEventListener('click', () => search(Math.max(0, state.offset - Number(state.query.limit || 50))));
  byId('next-page').addEventListener('click', () => search(state.offset + Number(state.query.limit || 50)));
  wirePlayer();
  state.canEvaluate = page.can('quality.evaluate');
  state.canReadQuality = state.canEvaluate || page.can('stats.read');
  if (state.canEvaluate) wireEvaluation();
  if (state.canReadQuality) {
    wireQuality();
    loadQuality();
  }
  drawWaveform();
  state.query = readQuery(form);
  await search(0);
}

start().catch(reportError);
