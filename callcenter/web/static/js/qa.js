// QA: search the recordings index with every criterion of GET /api/v1/recordings, page through the results, play
// one (every playback is audited by the server) with its waveform, edit its description and tags, and see the
// integrity state of each file.
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

const state = {query: {}, offset: 0, page: null, selected: null, users: new Map(), peaks: null};

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
  drawWaveform();
  state.query = readQuery(form);
  await search(0);
}

start().catch(reportError);
