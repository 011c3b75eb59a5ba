// The service desk (back office): the work queue of service records and one record's full view with its lifecycle
// actions. Every figure comes from the API; every caller- or customer-typed text goes into the page as text.
import {
  ApiError, api, apiDocument, byId, fill, h, label, notify, option, pageOf, reportError, schemaEnum, startPage,
  when,
} from './common.js';

const OPEN = ['new', 'assigned', 'in_progress'];
const STATUS_CLASS = {
  new: 'bad', assigned: 'warn', in_progress: 'info', resolved: 'ok', feedback_recorded: 'ok', archived: '',
};
// What the lifecycle lets each action start from (crm_bridge.records.TRANSITIONS); the server decides in the end.
const ACTIONS = {
  assign: ['new', 'assigned', 'in_progress'],
  start: ['assigned'],
  resolve: ['in_progress'],
  feedback: ['resolved'],
  archive: ['resolved', 'feedback_recorded'],
};
const QUEUE_LIMIT = 200;

const state = {
  me: null,
  can: () => false,
  users: new Map(),
  items: [],
  sort: {key: 'created_at', descending: true},
  record: null,
};

// -- small helpers ------------------------------------------------------------------------------------------------

function userName(id) {
  if (id === null || id === undefined) return '—';
  const user = state.users.get(id);
  return user ? user.display_name || user.username : `user #${id}`;
}

function statusBadge(status) {
  return h('span', {class: `badge ${STATUS_CLASS[status] ?? ''}`, dataset: {status}}, label(status));
}

function day(value) {
  return value ? String(value).slice(0, 10) : '—';
}

function errorText(error) {
  if (!(error instanceof ApiError)) return `Something went wrong: ${error}`;
  const fields = error.details?.fields;
  const named = fields && typeof fields === 'object' ? ` (${Object.keys(fields).join(', ')})` : '';
  return `${error.message}${named}`;
}

// Shows a refusal next to the form that caused it, and in the notice bar.
function refused(target, error) {
  const text = errorText(error);
  if (target) {
    target.textContent = text;
    target.classList.remove('hidden');
  }
  notify(text, 'error');
}

function clearError(target) {
  target.textContent = '';
  target.classList.add('hidden');
}

function formValues(form) {
  const values = {};
  for (const [key, raw] of new FormData(form).entries()) values[key] = String(raw).trim();
  return values;
}

// -- the work queue -------------------------------------------------------------------------------------------------

async function fetchQueue(filters) {
  const owner = filters.owner === 'mine' ? String(state.me.id) : filters.owner;
  if (filters.due) {
    const page = await api('/api/v1/desk/due', {query: {owner: owner || 'all', limit: QUEUE_LIMIT}});
    let items = page.items || [];
    if (filters.due === 'overdue') items = items.filter((item) => (item.overdue || []).length);
    return items;
  }
  const statuses = filters.status === 'open' ? OPEN : [filters.status || undefined];
  const pages = await Promise.all(statuses.map((status) => api('/api/v1/service-records', {
    query: {status, limit: QUEUE_LIMIT},
  })));
  return pages.flatMap((page) => page.items || []);
}

function matches(item, filters) {
  if (filters.status === 'open' && !OPEN.includes(item.status)) return false;
  if (filters.status && filters.status !== 'open' && item.status !== filters.status) return false;
  if (filters.type && item.type !== filters.type) return false;
  if (filters.owner === 'mine' && item.assigned_to !== state.me.id) return false;
  if (filters.owner === 'none' && item.assigned_to !== null && item.assigned_to !== undefined) return false;
  if (/^\d+$/.test(filters.owner || '') && item.assigned_to !== Number(filters.owner)) return false;
  return true;
}

const COLUMNS = [
  {key: 'id', title: '#'},
  {key: 'type', title: 'Type'},
  {key: 'status', title: 'Status'},
  {key: 'caller', title: 'Caller / customer'},
  {key: 'content', title: 'What'},
  {key: 'follow_up', title: 'Follow-up'},
  {key: 'appointment_at', title: 'Appointment'},
  {key: 'assigned_to', title: 'Owner'},
  {key: 'created_at', title: 'Created'},
];

function callerOf(item) {
  return item.customer?.name || item.caller_name || item.caller_number || (item.customer_id ? `customer #${item.customer_id}` : '');
}

function sortValue(item, key) {
  if (key === 'caller') return callerOf(item).toLowerCase();
  if (key === 'assigned_to') return item.assigned_to === null || item.assigned_to === undefined ? '' : userName(item.assigned_to).toLowerCase();
  const value = item[key];
  return value === null || value === undefined ? '' : value;
}

function sorted(items) {
  const {key, descending} = state.sort;
  const sign = descending ? -1 : 1;
  return [...items].sort((a, b) => {
    const left = sortValue(a, key);
    const right = sortValue(b, key);
    // Empty values last whichever the direction.
    if (left === '' && right !== '') return 1;
    if (right === '' && left !== '') return -1;
    if (left < right) return -sign;
    if (left > right) return sign;
    return b.id - a.id;
  });
}

function drawQueue() {
  const items = sorted(state.items);
  byId('queue-count').textContent = `${items.length} shown`;
  const header = h('tr', {}, COLUMNS.map((column) => {
    const active = state.sort.key === column.key;
    const arrow = active ? (state.sort.descending ? ' ▼' : ' ▲') : '';
    return h('th', {
      class: 'sortable', dataset: {sort: column.key}, 'aria-sort': active ? (state.sort.descending ? 'descending' : 'ascending') : null,
      onclick: () => {
        state.sort = {key: column.key, descending: active ? !state.sort.descending : false};
        drawQueue();
      },
    }, column.title + arrow);
  }));
  fill(byId('queue'), items.length ? h('table', {id: 'queue-table'},
    h('thead', {}, header),
    h('tbody', {}, items.map((item) => {
      const row = h('tr', {
        class: `selectable${state.record?.id === item.id ? ' selected' : ''}`, tabindex: 0,
        dataset: {record: item.id},
      },
      h('td', {}, String(item.id)),
      h('td', {class: 'small'}, label(item.type)),
      h('td', {}, statusBadge(item.status)),
      h('td', {class: 'small clip'}, callerOf(item)),
      h('td', {class: 'small clip'}, item.content || ''),
      h('td', {class: `small ${(item.overdue || []).includes('follow_up') ? 'overdue' : ''}`}, day(item.follow_up)),
      h('td', {class: `small ${(item.overdue || []).includes('appointment') ? 'overdue' : ''}`}, item.appointment_at ? when(item.appointment_at) : '—'),
      h('td', {class: 'small'}, userName(item.assigned_to)),
      h('td', {class: 'small'}, when(item.created_at)));
      row.addEventListener('click', () => showRecord(item.id));
      row.addEventListener('keydown', (event) => { if (event.key === 'Enter') showRecord(item.id); });
      return row;
    }))) : h('p', {class: 'empty'}, 'No record matches.'),
  state.items.length >= QUEUE_LIMIT ? h('p', {class: 'note'}, `The newest ${QUEUE_LIMIT} of each status are shown; narrow the filters.`) : null);
}

async function loadQueue() {
  const filters = formValues(byId('queue-form'));
  const button = byId('queue-button');
  button.disabled = true;
  try {
    const items = await fetchQueue(filters);
    state.items = items.filter((item) => matches(item, filters));
    drawQueue();
    document.body.dataset.queue = 'loaded';
  } catch (error) {
    reportError(error);
  } finally {
    button.disabled = false;
  }
}

// -- one record -----------------------------------------------------------------------------------------------------

function field(name, value, props = {}) {
  return [h('dt', {}, name), h('dd', props, value === null || value === undefined || value === '' ? '—' : value)];
}

function customerSummary(file) {
  if (!file) return h('p', {class: 'empty'}, 'No customer file is linked to this record.');
  const customer = file.customer;
  return h('div', {class: 'customer-card', id: 'record-customer'},
    h('div', {class: 'row'},
      h('span', {class: 'customer-name', id: 'record-customer-name'}, customer.name),
      h('span', {class: `badge tier-${customer.tier}`}, customer.tier),
      customer.churn_risk ? h('span', {class: 'badge bad'}, 'churn risk') : null),
    h('dl', {class: 'facts'},
      field('Company', customer.company),
      field('Region', customer.region),
      field('Numbers', (customer.phones || []).map((phone) => `${phone.number}${phone.kind ? ` (${phone.kind})` : ''}`).join(', ')),
      field('Address', customer.address),
      field('Notes', customer.notes, {class: 'pre'}),
      field('Open records', (file.open_records || []).map((record) => `#${record.id} ${label(record.type)}`).join(', '))));
}

async function callsOf(record) {
  const calls = [];
  if (record.linkedid) calls.push({linkedid: record.linkedid, what: 'the call that left this record'});
  if (record.type === 'callback_visit') {
    const visit = await api(`/api/v1/visits/${record.id}`).catch(() => null);
    for (const call of visit?.calls || []) {
      if (call.linkedid && call.linkedid !== record.linkedid) {
        calls.push({linkedid: call.linkedid, what: `visit call to ${call.number} by ${call.placed_by}`, at: call.placed_at});
      }
    }
  }
  return calls;
}

async function recordingsOf(linkedid) {
  if (!state.can('recordings.search')) return null;
  const page = await api('/api/v1/recordings', {query: {linkedid, limit: 20}}).catch(() => ({items: []}));
  return page.items || [];
}

async function callsBlock(record) {
  const calls = await callsOf(record);
  if (!calls.length) return h('p', {class: 'empty'}, 'No call is linked to this record.');
  const rows = await Promise.all(calls.map(async (call) => {
    const recordings = await recordingsOf(call.linkedid);
    let played;
    if (recordings === null) played = h('span', {class: 'small muted'}, 'recordings: QA and supervisors play them');
    else if (!recordings.length) played = h('span', {class: 'small muted'}, 'no recording');
    else {
      played = recordings.map((item) => h('div', {class: 'recording', dataset: {recording: item.id}},
        h('span', {class: 'small'}, `${label(item.kind)} · ${item.status}`),
        item.status === 'complete'
          ? h('audio', {controls: true, preload: 'none', src: `/api/v1/recordings/${encodeURIComponent(item.id)}/audio`})
          : null));
    }
    return h('tr', {dataset: {linkedid: call.linkedid}},
      h('td', {class: 'mono'}, call.linkedid),
      h('td', {class: 'small'}, call.what, call.at ? ` · ${when(call.at)}` : ''),
      h('td', {}, played));
  }));
  return h('table', {id: 'record-calls'}, h('tbody', {}, rows));
}

function changesText(changes) {
  if (!changes || typeof changes !== 'object') return '';
  return Object.entries(changes).map(([key, value]) => {
    if (value && typeof value === 'object' && ('from' in value || 'to' in value)) {
      return `${key}: ${JSON.stringify(value.from ?? null)} → ${JSON.stringify(value.to ?? null)}`;
    }
    return `${key}: ${typeof value === 'string' ? value : JSON.stringify(value)}`;
  }).join('; ');
}

function historyBlock(history) {
  if (!history?.length) return h('p', {class: 'empty'}, 'No change yet.');
  return h('table', {id: 'record-history'},
    h('thead', {}, h('tr', {}, ['When', 'Who', 'What', 'From → to', 'Changes'].map((name) => h('th', {}, name)))),
    h('tbody', {}, history.map((entry) => h('tr', {dataset: {action: entry.action}},
      h('td', {class: 'small'}, when(entry.at)),
      h('td', {class: 'small'}, entry.actor),
      h('td', {}, label(entry.action)),
      h('td', {class: 'small'}, `${entry.from_status ? label(entry.from_status) : '—'} → ${label(entry.to_status)}`),
      h('td', {class: 'small pre'}, changesText(entry.changes))))));
}

function usersSelect(name, selected) {
  return h('select', {name},
    [...state.users.values()].filter((user) => user.is_active !== false)
      .map((user) => option(String(user.id), `${user.display_name || user.username} (${user.username})`, user.id === selected)));
}

function actionsBlock(record) {
  const allowed = Object.keys(ACTIONS).filter((action) => ACTIONS[action].includes(record.status));
  if (!state.can('service_records.write')) return h('p', {class: 'note'}, 'Your roles cannot move records.');
  if (!allowed.length) return h('p', {class: 'empty'}, 'The lifecycle ends here: nothing more to do.');
  const error = h('p', {class: 'note error-text hidden', id: 'record-error', role: 'alert'});
  const note = h('input', {name: 'note', id: 'action-note', maxlength: 2000, placeholder: 'note (kept in the history)'});
  const forms = allowed.map((action) => {
    const inputs = [];
    if (action === 'assign') inputs.push(usersSelect('assigned_to', record.assigned_to ?? state.me.id));
    if (action === 'resolve') inputs.push(h('input', {name: 'outcome', maxlength: 2000, placeholder: 'outcome', value: record.outcome || ''}));
    if (action === 'feedback') inputs.push(h('input', {name: 'feedback', maxlength: 2000, placeholder: "customer's feedback"}));
    const form = h('form', {class: 'row action-form', id: `action-${action}`},
      inputs, h('button', {type: 'submit'}, {assign: 'Assign', start: 'Start', resolve: 'Resolve', feedback: 'Record feedback', archive: 'Archive'}[action]));
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      clearError(error);
      const values = formValues(form);
      const body = {action};
      if (action === 'assign') body.assigned_to = Number(values.assigned_to);
      if (action === 'resolve' && values.outcome) body.outcome = values.outcome;
      if (action === 'feedback') body.feedback = values.feedback || null;
      if (note.value.trim()) body.note = note.value.trim();
      const buttons = [...byId('record-actions').querySelectorAll('button')];
      buttons.forEach((button) => { button.disabled = true; });
      try {
        await api(`/api/v1/service-records/${record.id}/transition`, {method: 'POST', body});
        notify(`Record #${record.id}: ${label(action)} done.`, 'ok');
        await showRecord(record.id);
        loadQueue();
      } catch (failure) {
        refused(error, failure);
        buttons.forEach((button) => { button.disabled = false; });
      }
    });
    return form;
  });
  return h('div', {id: 'record-actions'}, forms, note, error);
}

async function showRecord(id) {
  const view = byId('record-view');
  try {
    const record = await api(`/api/v1/service-records/${id}`);
    state.record = record;
    const [file, calls] = await Promise.all([
      record.customer_id ? api(`/api/v1/customers/${record.customer_id}`).catch(() => null) : null,
      callsBlock(record),
    ]);
    fill(byId('record-title'), `Record #${record.id} · ${label(record.type)} `, statusBadge(record.status));
    fill(view,
      h('h3', {}, 'Customer'),
      customerSummary(file),
      h('h3', {}, 'Record'),
      h('dl', {class: 'facts', id: 'record-fields', dataset: {record: record.id, status: record.status}},
        field('What', record.content, {class: 'pre'}),
        field('Caller', [record.caller_name, record.caller_number].filter(Boolean).join(' · ')),
        field('Outcome', record.outcome, {class: 'pre'}),
        field('Feedback', record.feedback, {class: 'pre'}),
        field('Follow-up', record.follow_up ? day(record.follow_up) : null),
        field('Appointment', record.appointment_at ? when(record.appointment_at) : null),
        field('Owner', userName(record.assigned_to)),
        field('Product / fault', [record.product_id ? `product #${record.product_id}` : '', record.fault_type || ''].filter(Boolean).join(' · ')),
        field('Created', `${when(record.created_at)} by ${record.created_by}`),
        field('Updated', when(record.updated_at))),
      h('h3', {}, 'Lifecycle'),
      actionsBlock(record),
      h('h3', {}, 'Calls'),
      calls,
      h('h3', {}, 'History'),
      historyBlock(record.history));
    for (const row of document.querySelectorAll('#queue-table tbody tr')) {
      row.classList.toggle('selected', row.dataset.record === String(record.id));
    }
    view.dataset.record = String(record.id);
  } catch (error) {
    reportError(error);
  }
}

// -- tabs -----------------------------------------------------------------------------------------------------------

const TABS = [
  {tab: 'tab-records', section: 'records-section', any: ['desk.work'], load: loadQueue},
];

function show(chosen) {
  for (const item of TABS) {
    const active = item === chosen;
    byId(item.tab).setAttribute('aria-selected', String(active));
    byId(item.section).classList.toggle('hidden', !active);
  }
  chosen.load();
}

async function start() {
  const started = await startPage(pageOf('/desk'));
  if (!started) return;
  state.me = started.me;
  state.can = started.can;
  const documentation = await apiDocument();
  const types = byId('queue-form').elements.namedItem('type');
  for (const type of schemaEnum(documentation, 'CrmRecordType')) types.append(option(type, label(type)));
  const statuses = byId('queue-form').elements.namedItem('status');
  for (const status of ['new', 'assigned', 'in_progress', 'resolved', 'feedback_recorded', 'archived']) {
    statuses.append(option(status, label(status)));
  }
  try {
    const users = await api('/api/v1/users');
    for (const user of users.items || []) state.users.set(user.id, user);
  } catch {
    // Without users.read the owners show as ids and assigning offers only oneself.
    state.users.set(state.me.id, {id: state.me.id, username: state.me.username, display_name: state.me.display_name});
  }
  const owners = byId('queue-form').elements.namedItem('owner');
  for (const user of state.users.values()) owners.append(option(String(user.id), user.display_name || user.username));
  byId('queue-form').addEventListener('submit', (event) => {
    event.preventDefault();
    loadQueue();
  });
  const allowed = TABS.filter((item) => item.any.some(state.can));
  for (const item of TABS) {
    if (!allowed.includes(item)) byId(item.tab).classList.add('hidden');
    byId(item.tab).addEventListener('click', () => show(item));
  }
  if (allowed.length) show(allowed[0]);
  document.body.dataset.desk = 'ready';
}

start().catch(reportError);
