// The service desk (back office, supervisors): the work queue of service records and one record's full view with its
// lifecycle moves; work orders (dispatch with the rule's preview, the outlet's feedback), fees to review and outlets to
// keep; callback visits (placed in one click, their result); reminders and overdue records from the websocket.
// Each tab shows only with its permission, and the server decides every move: the page shows its refusals as they
// come. Every figure comes from the API; every caller-, customer- or outlet-typed text goes into the page as text.
import {
  ApiError, api, apiDocument, byId, fill, h, label, liveSocket, notify, option, pageOf, reportError, schemaEnum,
  startPage, when,
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
  // The order the server was last asked for: the page shown is the first of it.
  listed: '-created_at',
  record: null,
  outlets: null,
  order: null,
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
  // A 400 names each field with what is wrong with it; say both.
  const fields = error.details?.fields;
  const named = fields && typeof fields === 'object' && !Array.isArray(fields)
    ? `: ${Object.entries(fields).map(([name, text]) => `${name || 'body'}: ${text}`).join('; ')}`
    : '';
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

// The queue's filters and order are the server's (GET /api/v1/service-records): the page shown is the first of the
// records that match, not the newest few filtered here.
async function fetchQueue(filters, sort) {
  const owner = filters.owner === 'mine' ? 'me' : filters.owner;
  const query = {
    status: filters.status === 'open' ? OPEN.join(',') : filters.status || undefined,
    type: filters.type || undefined,
    assigned_to: owner || undefined,
    due: filters.due || undefined,
    sort,
    limit: QUEUE_LIMIT,
  };
  const page = await api('/api/v1/service-records', {query});
  return page.items || [];
}

// The column orders the server gives (the others order the page shown).
function serverSort({key, descending}) {
  if (key === 'created_at') return descending ? '-created_at' : 'created_at';
  if ((key === 'follow_up' || key === 'appointment_at') && !descending) return key;
  return null;
}

const COLUMNS = [
  {key: 'id', title: '#'},
  {key: 'type', title: 'Type'},
  {key: 'status', title: 'Status'},
  {key: 'caller', title: 'Customer / caller'},
  {key: 'content', title: 'What'},
  {key: 'follow_up', title: 'Follow-up'},
  {key: 'appointment_at', title: 'Appointment'},
  {key: 'assigned_to', title: 'Owner'},
  {key: 'created_at', title: 'Created'},
];

// The list names each record's customer (the name as typed: it goes into the page as text).
function callerOf(item) {
  return item.customer?.name || item.caller_name || item.caller_number || (item.customer_id ? `customer #${item.customer_id}` : '');
}

// A date-time as "YYYY-MM-DD HH:MM" in the browser's zone: short enough for a table's cell.
function short(iso) {
  if (!iso) return '—';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  const pad = (value) => String(value).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

// Overdue as the server's rules say (the list names each record's overdue occasions).
function late(item, what) {
  return (item.overdue || []).includes(what);
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
        const wanted = serverSort(state.sort);
        if (wanted && wanted !== state.listed) loadQueue();
        else drawQueue();
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
      h('td', {class: `small nowrap ${late(item, 'follow_up') ? 'overdue' : ''}`}, day(item.follow_up)),
      h('td', {class: `small nowrap ${late(item, 'appointment') ? 'overdue' : ''}`}, short(item.appointment_at)),
      h('td', {class: 'small'}, userName(item.assigned_to)),
      h('td', {class: 'small nowrap'}, short(item.created_at)));
      row.addEventListener('click', () => showRecord(item.id));
      row.addEventListener('keydown', (event) => { if (event.key === 'Enter') showRecord(item.id); });
      return row;
    }))) : h('p', {class: 'empty'}, 'No record matches.'),
  state.items.length >= QUEUE_LIMIT ? h('p', {class: 'note'}, `The first ${QUEUE_LIMIT} in this order are shown; narrow the filters.`) : null);
}

let queueAsked = 0;

async function loadQueue() {
  const filters = formValues(byId('queue-form'));
  const button = byId('queue-button');
  button.disabled = true;
  // Moves reload the queue: an answer to an older question that arrives after a newer one is dropped.
  const asked = ++queueAsked;
  const sort = serverSort(state.sort) || state.listed;
  try {
    const items = await fetchQueue(filters, sort);
    if (asked !== queueAsked) return;
    state.items = items;
    state.listed = sort;
    drawQueue();
    document.body.dataset.queue = 'loaded';
  } catch (error) {
    reportError(error);
  } finally {
    if (asked === queueAsked) button.disabled = false;
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
  const dispatchable = DISPATCHABLE.includes(record.type) && OPEN.includes(record.status) && state.can('outlets.manage');
  if (DISPATCHABLE.includes(record.type) && OPEN.includes(record.status)) forms.push(completeForm(record, error));
  return h('div', {id: 'record-actions'}, forms,
    dispatchable ? h('div', {class: 'row'}, h('button', {type: 'button', class: 'secondary', id: 'record-dispatch', onclick: () => toDispatch(record.id)}, 'Dispatch to an outlet…')) : null,
    note, error);
}

// A booking taken without its product or fault type is completed here, so that the rule can dispatch it.
function completeForm(record, error) {
  const product = h('input', {name: 'product_id', type: 'number', min: 1, placeholder: 'product #', value: record.product_id ?? ''});
  const fault = h('input', {name: 'fault_type', maxlength: 64, placeholder: 'fault type, e.g. no_power', value: record.fault_type ?? ''});
  const form = h('form', {class: 'row action-form', id: 'action-complete'}, product, fault, h('button', {type: 'submit', class: 'secondary'}, 'Save product and fault'));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearError(error);
    const body = {
      product_id: product.value.trim() ? Number(product.value) : null,
      fault_type: fault.value.trim() || null,
    };
    try {
      await api(`/api/v1/service-records/${record.id}`, {method: 'PATCH', body});
      notify(`Record #${record.id} completed.`, 'ok');
      await showRecord(record.id);
    } catch (failure) {
      refused(error, failure);
    }
  });
  return form;
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

// -- work orders, dispatch and fees ---------------------------------------------------------------------------------

const DISPATCHABLE = ['repair_booking', 'installation_booking'];

async function loadOutlets() {
  const page = await api('/api/v1/outlets', {query: {include_retired: 'true', limit: 200}});
  state.outlets = new Map((page.items || []).map((outlet) => [outlet.id, outlet]));
  const active = [...state.outlets.values()].filter((outlet) => outlet.active);
  const describe = (outlet) => `${outlet.name} · ${outlet.region}`;
  const filter = byId('orders-outlet');
  const chosenFilter = filter.value;
  fill(filter, option('', 'any'), [...state.outlets.values()].map((outlet) => option(String(outlet.id), describe(outlet), String(outlet.id) === chosenFilter)));
  const dispatch = byId('dispatch-outlet');
  const chosen = dispatch.value;
  fill(dispatch, option('', "the rule's choice"), active.map((outlet) => option(String(outlet.id), describe(outlet), String(outlet.id) === chosen)));
}

function money(value) {
  return value === null || value === undefined ? '—' : String(value);
}

async function loadOrders() {
  try {
    if (!state.outlets) await loadOutlets();
    const filters = formValues(byId('orders-form'));
    const page = await api('/api/v1/work-orders', {query: {...filters, limit: 200}});
    const items = page.items || [];
    byId('orders-count').textContent = `${items.length} shown`;
    fill(byId('orders'), items.length ? h('table', {id: 'orders-table'},
      h('thead', {}, h('tr', {}, ['#', 'Record', 'Kind', 'Outlet', 'Status', 'Chosen', 'Appointment', 'Fee', 'Dispatched'].map((name) => h('th', {}, name)))),
      h('tbody', {}, items.map((order) => {
        const row = h('tr', {class: `selectable${state.order === order.id ? ' selected' : ''}`, tabindex: 0, dataset: {order: order.id, record: order.service_record_id}},
          h('td', {}, String(order.id)),
          h('td', {}, `#${order.service_record_id}`),
          h('td', {}, order.kind),
          h('td', {class: 'small'}, order.outlet_name),
          h('td', {}, h('span', {class: `badge ${{dispatched: 'info', done: 'ok', cancelled: ''}[order.status] ?? ''}`}, order.status)),
          h('td', {class: 'small'}, order.chosen === 'override' ? `override: ${order.override_reason || ''}` : 'rule'),
          h('td', {class: 'small'}, order.appointment_at ? when(order.appointment_at) : '—'),
          h('td', {class: 'small'}, order.settlement ? `${money(order.settlement.amount)} (${order.settlement.status})` : money(order.feedback?.fee)),
          h('td', {class: 'small'}, `${when(order.created_at)} by ${order.dispatched_by}`));
        row.addEventListener('click', () => showOrder(order.id));
        return row;
      }))) : h('p', {class: 'empty'}, 'No work order matches.'));
    document.body.dataset.orders = 'loaded';
  } catch (error) {
    reportError(error);
  }
}

function nowLocal() {
  const now = new Date();
  now.setMinutes(now.getMinutes() - now.getTimezoneOffset());
  return now.toISOString().slice(0, 16);
}

function feedbackForm(order) {
  const error = h('p', {class: 'note error-text hidden', id: 'feedback-error', role: 'alert'});
  const form = h('form', {id: 'feedback-form'},
    h('h3', {}, "The outlet's feedback"),
    h('label', {class: 'block'}, h('span', {}, 'Done at'), h('input', {name: 'completed_at', type: 'datetime-local', required: true, value: nowLocal()})),
    h('label', {class: 'block'}, h('span', {}, 'Parts used'), h('input', {name: 'parts_used', maxlength: 2000})),
    h('label', {class: 'block'}, h('span', {}, 'Fee (0 for none)'), h('input', {name: 'fee', inputmode: 'decimal', value: '0', maxlength: 20})),
    h('label', {class: 'block'}, h('span', {}, 'Notes'), h('textarea', {name: 'notes', maxlength: 20000})),
    h('button', {type: 'submit'}, 'Register feedback'), error);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearError(error);
    const values = formValues(form);
    const body = {completed_at: new Date(values.completed_at).toISOString(), fee: values.fee || '0'};
    if (values.parts_used) body.parts_used = values.parts_used;
    if (values.notes) body.notes = values.notes;
    try {
      await api(`/api/v1/work-orders/${order.id}/feedback`, {method: 'POST', body});
      notify(`Work order #${order.id} is done.`, 'ok');
      await showOrder(order.id);
      loadOrders();
    } catch (failure) {
      refused(error, failure);
    }
  });
  const reason = h('input', {name: 'reason', maxlength: 2000, placeholder: 'why it is cancelled', required: true});
  const cancel = h('form', {id: 'cancel-form', class: 'row'}, reason, h('button', {type: 'submit', class: 'danger'}, 'Cancel order'));
  cancel.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearError(error);
    try {
      await api(`/api/v1/work-orders/${order.id}/cancel`, {method: 'POST', body: {reason: reason.value.trim()}});
      notify(`Work order #${order.id} is cancelled.`, 'ok');
      await showOrder(order.id);
      loadOrders();
    } catch (failure) {
      refused(error, failure);
    }
  });
  return [form, cancel];
}

function outletHistory(history) {
  if (!history?.length) return null;
  return h('table', {class: 'order-history'},
    h('tbody', {}, history.map((entry) => h('tr', {},
      h('td', {class: 'small'}, when(entry.at)),
      h('td', {class: 'small'}, entry.actor),
      h('td', {}, label(entry.action)),
      h('td', {class: 'small pre'}, changesText(entry.changes))))));
}

async function showOrder(id) {
  try {
    const order = await api(`/api/v1/work-orders/${id}`);
    state.order = order.id;
    for (const row of document.querySelectorAll('#orders-table tbody tr')) row.classList.toggle('selected', row.dataset.order === String(id));
    const feedback = order.feedback;
    fill(byId('order-view'),
      h('h2', {}, `Work order #${order.id} · ${order.kind} · ${order.status}`),
      h('dl', {class: 'facts', id: 'order-fields', dataset: {order: order.id, status: order.status}},
        field('Record', `#${order.service_record_id}`),
        field('Outlet', order.outlet_name),
        field('Region / category', [order.region, order.product_category].filter(Boolean).join(' · ')),
        field('Fault', order.fault_type),
        field('Chosen', order.chosen === 'override' ? `override: ${order.override_reason || ''}` : 'by the rule'),
        field('Appointment', order.appointment_at ? when(order.appointment_at) : null),
        field('Done at', feedback ? when(feedback.completed_at) : null),
        field('Parts', feedback?.parts_used, {class: 'pre'}),
        field('Fee', feedback ? money(feedback.fee) : null),
        field('Settlement', order.settlement ? `${money(order.settlement.amount)} · ${order.settlement.status}${order.settlement.reason ? ` · ${order.settlement.reason}` : ''}` : null),
        field('Notes', feedback?.notes, {class: 'pre'}),
        field('Cancelled', order.cancel_reason)),
      order.status === 'dispatched' && state.can('outlets.manage') ? feedbackForm(order) : null,
      h('h3', {}, 'History'),
      outletHistory(order.history));
  } catch (error) {
    reportError(error);
  }
}

async function previewDispatch() {
  const error = byId('dispatch-error');
  clearError(error);
  const recordId = byId('dispatch-record').value.trim();
  if (!recordId) return;
  try {
    if (!state.outlets) await loadOutlets();
    const preview = await api('/api/v1/work-orders/preview', {query: {service_record_id: recordId}});
    const candidates = preview.candidates || [];
    fill(byId('dispatch-preview'), h('div', {class: 'customer-card', id: 'dispatch-preview-box', dataset: {record: recordId}},
      h('div', {class: 'small'}, `${preview.kind || 'not dispatchable'} · region ${preview.region ?? '—'} · category ${preview.category ?? '—'}`),
      preview.refusal
        ? h('p', {class: 'note', id: 'dispatch-refusal'}, `${preview.refusal.message} (${preview.refusal.code})`)
        : h('p', {id: 'dispatch-chosen'}, 'The rule chooses ', h('strong', {}, preview.chosen?.name ?? '—'),
          preview.chosen ? ` (${preview.chosen.open_orders} open orders)` : ''),
      candidates.length ? h('ol', {class: 'candidates small'}, candidates.map((outlet) => h('li', {
        class: preview.chosen?.id === outlet.id ? 'chosen' : '',
      }, `${outlet.name} · ${outlet.region} · ${outlet.open_orders} open`))) : null));
  } catch (failure) {
    refused(error, failure);
  }
}

async function dispatch(event) {
  event.preventDefault();
  const error = byId('dispatch-error');
  clearError(error);
  const values = formValues(byId('dispatch-form'));
  const body = {service_record_id: Number(values.service_record_id)};
  if (values.outlet_id) body.outlet_id = Number(values.outlet_id);
  if (values.override_reason) body.override_reason = values.override_reason;
  if (values.appointment_at) body.appointment_at = new Date(values.appointment_at).toISOString();
  try {
    const order = await api('/api/v1/work-orders', {method: 'POST', body});
    notify(`Record #${order.service_record_id} dispatched to ${order.outlet_name} (work order #${order.id}).`, 'ok');
    byId('dispatch-form').reset();
    fill(byId('dispatch-preview'));
    await loadOutlets();
    await loadOrders();
    await showOrder(order.id);
  } catch (failure) {
    refused(error, failure);
  }
}

function toDispatch(recordId) {
  show(TABS.find((item) => item.tab === 'tab-orders'));
  byId('dispatch-record').value = String(recordId);
  previewDispatch();
}

async function loadFees() {
  const error = byId('fees-error');
  clearError(error);
  try {
    const page = await api('/api/v1/fee-settlements', {query: {...formValues(byId('fees-form')), limit: 200}});
    const items = page.items || [];
    byId('fees-count').textContent = `${items.length} shown`;
    fill(byId('fees'), items.length ? h('table', {id: 'fees-table'},
      h('thead', {}, h('tr', {}, ['#', 'Order', 'Record', 'Outlet', 'Kind', 'Amount', 'Status', 'Reviewed', ''].map((name) => h('th', {}, name)))),
      h('tbody', {}, items.map((fee) => {
        const reason = h('input', {name: 'reason', maxlength: 2000, placeholder: 'reason (needed to reject)'});
        const review = async (decision) => {
          clearError(error);
          const body = {decision};
          if (reason.value.trim()) body.reason = reason.value.trim();
          try {
            await api(`/api/v1/fee-settlements/${fee.id}/review`, {method: 'POST', body});
            notify(`Fee #${fee.id} ${decision === 'approve' ? 'approved' : 'rejected'}.`, 'ok');
            loadFees();
          } catch (failure) {
            refused(error, failure);
          }
        };
        return h('tr', {dataset: {fee: fee.id, order: fee.order_id, status: fee.status}},
          h('td', {}, String(fee.id)),
          h('td', {}, `#${fee.order_id}`),
          h('td', {}, `#${fee.service_record_id}`),
          h('td', {class: 'small'}, fee.outlet_name),
          h('td', {}, fee.kind),
          h('td', {class: 'mono'}, money(fee.amount)),
          h('td', {}, h('span', {class: `badge ${{pending: 'warn', approved: 'ok', rejected: 'bad'}[fee.status] ?? ''}`}, fee.status)),
          h('td', {class: 'small'}, fee.reviewed_by ? `${fee.reviewed_by} · ${when(fee.reviewed_at)}${fee.reason ? ` · ${fee.reason}` : ''}` : '—'),
          h('td', {}, fee.status === 'pending' ? h('div', {class: 'row'}, reason,
            h('button', {type: 'button', class: 'approve', onclick: () => review('approve')}, 'Approve'),
            h('button', {type: 'button', class: 'danger reject', onclick: () => review('reject')}, 'Reject')) : null));
      }))) : h('p', {class: 'empty'}, 'No fee matches.'));
    document.body.dataset.fees = 'loaded';
  } catch (failure) {
    refused(error, failure);
  }
}

// -- outlets --------------------------------------------------------------------------------------------------------

function editOutlet(outlet) {
  const form = byId('outlet-form');
  const set = (name, value) => { form.elements.namedItem(name).value = value ?? ''; };
  set('id', outlet?.id);
  set('name', outlet?.name);
  set('region', outlet?.region);
  set('categories', (outlet?.categories || []).join(', '));
  for (const name of ['contact_person', 'phone', 'address', 'notes']) set(name, outlet?.[name]);
  byId('outlet-form-title').textContent = outlet ? `Outlet #${outlet.id}` : 'New outlet';
  byId('outlet-save').textContent = outlet ? 'Save outlet' : 'Create outlet';
  clearError(byId('outlet-error'));
}

async function loadOutletsTab() {
  const error = byId('outlets-error');
  clearError(error);
  try {
    await loadOutlets();
    const showRetired = byId('outlets-retired').checked;
    const items = [...state.outlets.values()].filter((outlet) => showRetired || outlet.active);
    fill(byId('outlets'), items.length ? h('table', {id: 'outlets-table'},
      h('thead', {}, h('tr', {}, ['#', 'Name', 'Region', 'Categories', 'Contact', 'Open', ''].map((name) => h('th', {}, name)))),
      h('tbody', {}, items.map((outlet) => {
        const reason = h('input', {maxlength: 2000, placeholder: 'reason'});
        const retire = async () => {
          clearError(error);
          try {
            await api(`/api/v1/outlets/${outlet.id}/retire`, {method: 'POST', body: {reason: reason.value.trim() || null}});
            notify(`Outlet ${outlet.name} retired.`, 'ok');
            loadOutletsTab();
          } catch (failure) {
            refused(error, failure);
          }
        };
        return h('tr', {class: outlet.active ? '' : 'muted', dataset: {outlet: outlet.id}},
          h('td', {}, String(outlet.id)),
          h('td', {}, outlet.name),
          h('td', {}, outlet.region),
          h('td', {class: 'small'}, (outlet.categories || []).join(', ')),
          h('td', {class: 'small'}, [outlet.contact_person, outlet.phone].filter(Boolean).join(' · ')),
          h('td', {}, String(outlet.open_orders)),
          h('td', {}, outlet.active ? h('div', {class: 'row'},
            h('button', {type: 'button', class: 'secondary edit', onclick: () => editOutlet(outlet)}, 'Edit'),
            reason, h('button', {type: 'button', class: 'danger retire', onclick: retire}, 'Retire'))
            : `retired ${when(outlet.retired_at)}${outlet.retired_reason ? `: ${outlet.retired_reason}` : ''}`));
      }))) : h('p', {class: 'empty'}, 'No outlet yet.'));
    document.body.dataset.outlets = 'loaded';
  } catch (failure) {
    refused(error, failure);
  }
}

async function saveOutlet(event) {
  event.preventDefault();
  const error = byId('outlet-error');
  clearError(error);
  const values = formValues(byId('outlet-form'));
  const body = {
    name: values.name,
    region: values.region,
    categories: values.categories.split(',').map((item) => item.trim()).filter(Boolean),
  };
  for (const name of ['contact_person', 'phone', 'address', 'notes']) body[name] = values[name] || null;
  try {
    const saved = values.id
      ? await api(`/api/v1/outlets/${values.id}`, {method: 'PATCH', body})
      : await api('/api/v1/outlets', {method: 'POST', body});
    notify(`Outlet ${saved.name} saved.`, 'ok');
    editOutlet(null);
    loadOutletsTab();
  } catch (failure) {
    refused(error, failure);
  }
}

// -- callback visits ------------------------------------------------------------------------------------------------

const CAUSES = {
  abandoned_call: 'caller gave up in the queue',
  expert_callback: 'expert callback asked for',
  complaint: 'complaint resolved',
  repair: 'repair done',
  other: 'by hand',
};
const OUTCOMES = ['reached', 'not_reached', 'refused', 'wrong_number'];

function causeText(visit) {
  return `${CAUSES[visit.cause] || label(visit.cause)}${visit.cause_ref ? ` (${visit.cause_ref})` : ''}`;
}

async function placeVisit(visit, error) {
  clearError(error);
  try {
    const placed = await api(`/api/v1/visits/${visit.id}/place`, {method: 'POST'});
    notify(`Your phone (${placed.agent}) rings first, then ${placed.number}.`, 'ok');
    loadVisits();
    showVisit(visit.id);
  } catch (failure) {
    refused(error, failure);
  }
}

async function loadVisits() {
  const error = byId('visits-error');
  clearError(error);
  try {
    const filters = formValues(byId('visits-form'));
    if (filters.owner === 'mine') filters.owner = String(state.me.id);
    const page = await api('/api/v1/visits', {query: {...filters, limit: 200}});
    const items = page.items || [];
    byId('visits-count').textContent = `${items.length} of ${page.total}`;
    fill(byId('visits'), items.length ? h('table', {id: 'visits-table'},
      h('thead', {}, h('tr', {}, ['#', 'Why', 'Customer', 'Number', 'Status', 'Owner', 'Calls', 'Filed', ''].map((name) => h('th', {}, name)))),
      h('tbody', {}, items.map((visit) => {
        const row = h('tr', {class: 'selectable', tabindex: 0, dataset: {visit: visit.id, status: visit.status}},
          h('td', {}, String(visit.id)),
          h('td', {class: 'small'}, causeText(visit)),
          h('td', {class: 'small'}, visit.customer?.name || visit.caller_name || ''),
          h('td', {class: 'mono'}, visit.number || '—'),
          h('td', {}, statusBadge(visit.status)),
          h('td', {class: 'small'}, userName(visit.assigned_to)),
          h('td', {}, String((visit.calls || []).length)),
          h('td', {class: 'small'}, when(visit.created_at)),
          h('td', {}, visit.result ? label(visit.result.outcome) : !OPEN.includes(visit.status) ? '' : h('button', {
            type: 'button', class: 'call-now', disabled: !visit.number,
            onclick: (event) => { event.stopPropagation(); placeVisit(visit, error); },
          }, 'Call now')));
        row.addEventListener('click', () => showVisit(visit.id));
        return row;
      }))) : h('p', {class: 'empty'}, 'No visit matches.'));
    document.body.dataset.visits = 'loaded';
  } catch (failure) {
    refused(error, failure);
  }
}

function scoreSelect(name) {
  return h('select', {name}, option('', '—'), [1, 2, 3, 4, 5].map((score) => option(String(score), String(score))));
}

function resultForm(visit, items) {
  const error = h('p', {class: 'note error-text hidden', id: 'visit-error', role: 'alert'});
  const outcome = h('select', {name: 'outcome'}, OUTCOMES.map((value) => option(value, label(value))));
  const satisfaction = scoreSelect('satisfaction');
  const scores = items.map((item) => ({item, select: scoreSelect(`score-${item.id}`)}));
  const onlyReached = h('div', {id: 'reached-only'},
    h('label', {class: 'block'}, h('span', {}, 'Satisfaction (1 to 5)'), satisfaction),
    scores.length ? h('div', {class: 'scores'}, scores.map(({item, select}) => [
      h('span', {class: 'small'}, item.name), select,
    ])) : h('p', {class: 'small muted'}, 'No evaluation item for visits yet.'));
  const toggle = () => onlyReached.classList.toggle('hidden', outcome.value !== 'reached');
  outcome.addEventListener('change', toggle);
  const comment = h('textarea', {name: 'comment', maxlength: 20000});
  const form = h('form', {id: 'visit-result-form'},
    h('h3', {}, 'Result'),
    h('label', {class: 'block'}, h('span', {}, 'Outcome'), outcome),
    onlyReached,
    h('label', {class: 'block'}, h('span', {}, 'Comment'), comment),
    h('button', {type: 'submit'}, 'Record the result'), error);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearError(error);
    const body = {outcome: outcome.value};
    if (outcome.value === 'reached') {
      if (satisfaction.value) body.satisfaction = Number(satisfaction.value);
      body.scores = scores.filter(({select}) => select.value).map(({item, select}) => ({item_id: item.id, score: Number(select.value)}));
    }
    if (comment.value.trim()) body.comment = comment.value.trim();
    try {
      await api(`/api/v1/visits/${visit.id}/result`, {method: 'POST', body});
      notify(`Visit #${visit.id}: result recorded.`, 'ok');
      await showVisit(visit.id);
      loadVisits();
    } catch (failure) {
      refused(error, failure);
    }
  });
  return form;
}

function resultBlock(visit, items) {
  const result = visit.result;
  const names = new Map(items.map((item) => [item.id, item.name]));
  return h('dl', {class: 'facts', id: 'visit-result'},
    field('Outcome', label(result.outcome)),
    field('Satisfaction', result.satisfaction ? `${result.satisfaction} / 5` : null),
    field('Scores', (result.scores || []).map((score) => `${names.get(score.item_id) ?? score.name ?? `item #${score.item_id}`}: ${score.score}`).join(', ')),
    field('Comment', result.comment, {class: 'pre'}),
    field('Recorded', `${when(result.recorded_at)} by ${result.recorded_by}`));
}

async function showVisit(id) {
  try {
    const [visit, items] = await Promise.all([
      api(`/api/v1/visits/${id}`),
      api('/api/v1/evaluation-items', {query: {applies_to: 'visit', active: 'true'}}).then((page) => page.items || []).catch(() => []),
    ]);
    for (const row of document.querySelectorAll('#visits-table tbody tr')) row.classList.toggle('selected', row.dataset.visit === String(id));
    const error = h('p', {class: 'note error-text hidden', id: 'visit-call-error', role: 'alert'});
    const open = OPEN.includes(visit.status) && !visit.result;
    fill(byId('visit-title'), `Visit #${visit.id} `, statusBadge(visit.status));
    fill(byId('visit-view'),
      h('dl', {class: 'facts', id: 'visit-fields', dataset: {visit: visit.id, status: visit.status}},
        field('Why', causeText(visit)),
        field('Customer', visit.customer?.name, {id: 'visit-customer'}),
        field('Caller name', visit.caller_name),
        field('Number', visit.number),
        field('What', visit.content, {class: 'pre'}),
        field('Owner', userName(visit.assigned_to)),
        field('Filed', when(visit.created_at))),
      open ? h('div', {class: 'row'},
        h('button', {type: 'button', id: 'visit-call', disabled: !visit.number, onclick: () => placeVisit(visit, error)}, 'Call now'),
        h('span', {class: 'small muted'}, 'your own phone rings first, then the customer')) : null,
      error,
      h('h3', {}, 'Calls placed'),
      (visit.calls || []).length ? h('ul', {id: 'visit-calls'}, visit.calls.map((call) => h('li', {class: 'small'},
        `${when(call.placed_at)} · ${call.number} · by ${call.placed_by} · `, h('span', {class: 'mono'}, call.linkedid))))
        : h('p', {class: 'empty'}, 'None yet.'),
      visit.result ? resultBlock(visit, items) : open ? resultForm(visit, items) : null);
  } catch (error) {
    reportError(error);
  }
}

// -- reminders and overdue records from the websocket ---------------------------------------------------------------

const NOTICES_KEPT = 50;

function addNotice(kind, text, recordId) {
  const list = byId('notices');
  list.querySelector('.empty')?.remove();
  const item = h('li', {class: kind, dataset: {kind, record: recordId ?? ''}},
    h('span', {class: 'small muted'}, `${new Date().toLocaleTimeString()} `),
    recordId ? h('a', {href: '/desk', onclick: (event) => {
      event.preventDefault();
      show(TABS[0]);
      showRecord(recordId);
    }}, text) : text);
  list.prepend(item);
  while (list.children.length > NOTICES_KEPT) list.lastElementChild.remove();
  byId('notices-count').textContent = `${list.children.length}`;
}

function describe(item) {
  const who = item.customer?.name || item.caller_name || item.caller_number || 'no customer';
  const why = [
    ...(item.overdue || []).map((what) => `${label(what)} overdue`),
    ...(item.due || []).filter((what) => !(item.overdue || []).includes(what)).map((what) => `${label(what)} due`),
  ].join(', ');
  return `#${item.id} ${label(item.type)} · ${who}${why ? ` · ${why}` : ''}`;
}

function onFrame(frame) {
  if (frame.type === 'reminder' && frame.record) {
    addNotice('reminder', `Reminder: ${describe(frame.record)}`, frame.record.id);
  } else if (frame.type === 'overdue') {
    const records = frame.records || [];
    for (const record of records.slice().reverse()) addNotice('overdue', `Overdue: ${describe(record)}`, record.id);
    const more = (frame.new || 0) - records.length;
    if (more > 0) addNotice('overdue', `and ${more} more overdue records`, null);
  }
}

// -- tabs -----------------------------------------------------------------------------------------------------------

const TABS = [
  {tab: 'tab-records', section: 'records-section', any: ['desk.work'], load: loadQueue},
  {tab: 'tab-orders', section: 'orders-section', any: ['desk.work'], load: loadOrders},
  {tab: 'tab-fees', section: 'fees-section', any: ['fees.review'], load: loadFees},
  {tab: 'tab-outlets', section: 'outlets-section', any: ['outlets.manage'], load: loadOutletsTab},
  {tab: 'tab-visits', section: 'visits-section', any: ['desk.work'], load: loadVisits},
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
  if (!state.can('outlets.manage')) {
    byId('dispatch-form').classList.add('hidden');
  }
  byId('dispatch-form').addEventListener('submit', dispatch);
  byId('dispatch-preview-button').addEventListener('click', previewDispatch);
  byId('orders-form').addEventListener('submit', (event) => { event.preventDefault(); loadOrders(); });
  byId('fees-form').addEventListener('submit', (event) => { event.preventDefault(); loadFees(); });
  byId('outlet-form').addEventListener('submit', saveOutlet);
  byId('outlet-new').addEventListener('click', () => editOutlet(null));
  byId('outlets-retired').addEventListener('change', loadOutletsTab);
  byId('visits-form').addEventListener('submit', (event) => { event.preventDefault(); loadVisits(); });
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
  liveSocket(onFrame);
  document.body.dataset.desk = 'ready';
}

start().catch(reportError);
